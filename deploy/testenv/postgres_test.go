package testenv

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestStartPostgres(t *testing.T) {
	var dir string
	t.Run("restart on the same directory", func(t *testing.T) {
		srv := StartPostgres(t, "")
		dir = srv.Dir()
		if err := srv.CreateDatabase(t.Context(), "kept"); err != nil {
			t.Fatal(err)
		}
		if err := srv.Stop(t.Context()); err != nil {
			t.Fatal(err)
		}
		again := StartPostgres(t, dir)
		conn, err := pgx.Connect(t.Context(), again.URL("kept"))
		if err != nil {
			t.Fatalf("database lost across the restart: %v", err)
		}
		conn.Close(context.Background())
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s not removed after the test: %v", dir, err)
	}
}
