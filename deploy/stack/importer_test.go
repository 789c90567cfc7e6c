package stack

import (
	"strings"
	"testing"
)

func TestReadImportID(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{"id", `{"status":"sha256:0123abcd"}` + "\n", "sha256:0123abcd", ""},
		{"progress then id", `{"status":"Importing","progressDetail":{"current":1,"total":2}}{"status":"sha256:beef"}`, "sha256:beef", ""},
		{"engine error", `{"errorDetail":{"message":"no space left"},"error":"no space left"}`, "", "no space left"},
		{"no id", `{"status":"Importing"}`, "", "no image ID"},
		{"empty", ``, "", "no image ID"},
		{"garbage", `{"status":`, "", "read import response"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readImportID(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("readImportID err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("readImportID = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestImageChanges(t *testing.T) {
	got := strings.Join(imageChanges("0.1.0", "builder"), "\n")
	for _, want := range []string{"ENV LANG=C.UTF-8", "ENV PATH=/usr/local/sbin:", "WORKDIR /app",
		`LABEL gantry.stack.version="0.1.0" gantry.stack.image="builder"`} {
		if !strings.Contains(got, want) {
			t.Errorf("changes lack %q:\n%s", want, got)
		}
	}
}
