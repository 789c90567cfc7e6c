package stack

import (
	"strings"
	"testing"
)

// TestReadImageID reads the engine's message streams of imports (the ID
// in a status) and builds (the ID in an aux message, the text written out).
func TestReadImageID(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantOut string
		wantErr string
	}{
		{"import id", `{"status":"sha256:0123abcd"}` + "\n", "sha256:0123abcd", "", ""},
		{"progress then id", `{"status":"Importing","progressDetail":{"current":1,"total":2}}{"status":"sha256:beef"}`, "sha256:beef", "", ""},
		{"build id", `{"stream":"Step 1/2\n"}{"aux":{"ID":"sha256:cafe"}}{"stream":"Successfully built\n"}`, "sha256:cafe", "Step 1/2\nSuccessfully built\n", ""},
		{"aux without an image ID", `{"aux":{"ID":"not-an-id"}}`, "", "", "no image ID"},
		{"engine error", `{"errorDetail":{"message":"no space left"},"error":"no space left"}`, "", "", "no space left"},
		{"no id", `{"status":"Importing"}`, "", "", "no image ID for the test"},
		{"empty", ``, "", "", "no image ID"},
		{"garbage", `{"status":`, "", "", "read test output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			got, err := readImageID(strings.NewReader(tt.in), "test", &out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("readImageID err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want || out.String() != tt.wantOut {
				t.Fatalf("readImageID = %q, %v, wrote %q; want %q, wrote %q", got, err, out.String(), tt.want, tt.wantOut)
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
