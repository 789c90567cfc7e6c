package cli

import (
	"os"
	"testing"
	"time"

	"github.com/gantryhq/gantry/deploy/testenv"
)

func TestMain(m *testing.M) {
	// gantry scale polls the test controller, whose jobs move one step per
	// poll: poll as fast as the tests can.
	pollInterval = time.Millisecond
	// The tests against the real controller (controller_real_test.go)
	// need PostgreSQL.
	os.Exit(testenv.RunWithPostgres(m))
}
