package slugbuilder

import (
	"strings"
	"testing"
)

func TestLineWriter(t *testing.T) {
	var out strings.Builder
	w := newLineWriter(&out)
	for _, chunk := range []string{"-----> Step one\nplain", " line\r\n", "", "\n-----> Step", " two\n   spaced\n-----x not a step\nno newline at the end"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	w.step("Own step %d", 3)
	w.info("info\nover two lines")
	w.fail("it broke\nbadly\n")
	want := "-----> Step one\n" +
		"       plain line\n" +
		"       \n" +
		"-----> Step two\n" +
		"          spaced\n" +
		"       -----x not a step\n" +
		"       no newline at the end\n" +
		"-----> Own step 3\n" +
		"       info\n" +
		"       over two lines\n" +
		" !     it broke\n" +
		" !     badly\n"
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestLineWriterLongLine(t *testing.T) {
	var out strings.Builder
	w := newLineWriter(&out)
	w.Write([]byte(strings.Repeat("x", maxLine+10)))
	w.Flush()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 || len(lines[0]) != len(indent)+maxLine || lines[1] != indent+"xxxxxxxxxx" {
		t.Errorf("a long line came out as %d lines", len(lines))
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0K", 1: "1K", 1024: "1K", 1025: "2K", 512 << 10: "512K",
		1 << 20: "1.0M", 4404019: "4.2M", 500 << 20: "500.0M", 3 << 29: "1.5G",
	} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}
