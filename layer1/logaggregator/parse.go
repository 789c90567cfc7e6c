package logaggregator

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/gantryhq/gantry/layer1/logaggregator/types"
)

// errLineTooLong is returned by readLine for a line longer than its limit.
var errLineTooLong = errors.New("line too long")

// ParseLine decodes one line of NDJSON (with or without its line break)
// into a valid Line. Unknown fields, a second JSON value and invalid
// fields are errors that name the problem.
func ParseLine(b []byte) (types.Line, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var l types.Line
	if err := dec.Decode(&l); err != nil {
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			return types.Line{}, errors.New("empty line")
		case errors.As(err, &typeErr) && typeErr.Field != "":
			return types.Line{}, fmt.Errorf("field %q: got a JSON %s", typeErr.Field, typeErr.Value)
		}
		return types.Line{}, fmt.Errorf("malformed JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return types.Line{}, errors.New("more than one JSON value on the line")
	}
	if err := l.Validate(); err != nil {
		return types.Line{}, err
	}
	l.Time = l.Time.UTC()
	return l, nil
}

// readLine reads one line, its line break included, into buf[:0]: at EOF
// the last line may lack one. A line longer than max bytes is
// errLineTooLong, with the reader left inside it.
func readLine(br *bufio.Reader, buf []byte, max int) ([]byte, error) {
	buf = buf[:0]
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag) > max+1 {
			return buf, errLineTooLong
		}
		buf = append(buf, frag...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return buf, err
	}
}

// skipLine reads up to and including the next line break.
func skipLine(br *bufio.Reader) error {
	for {
		_, err := br.ReadSlice('\n')
		if !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
}
