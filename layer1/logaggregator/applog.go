package logaggregator

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gantryhq/gantry/layer1/logaggregator/types"
)

// fileSuffix ends the name of every app's log file.
const fileSuffix = ".ndjson"

// followBuffer is how many lines a follower may fall behind by before the
// next ones are dropped (and counted) for it.
const followBuffer = 1024

// appLog is the bounded history of one app's log, oldest first by time, and
// its append-only file.
type appLog struct {
	app  string
	max  int
	path string
	log  *slog.Logger

	mu   sync.Mutex
	buf  []types.Line // buf[head:] are the kept lines, in time order
	head int
	// file is opened at the first line written; nil before and after close.
	file      *os.File
	w         *bufio.Writer
	fileLines int // lines the file holds
	// tail follows the times of the lines the file holds, so that a
	// compaction can copy the file's last lines when they are the kept
	// ones rather than encode the kept lines again.
	fileTail tailTimes
	dirty    bool // w holds lines not yet written to the file
	closed   bool
	failed   bool // a write failed; reported once until one succeeds
	subs     map[*follower]struct{}
}

// follower is one reader of a followed log.
type follower struct {
	q       types.Query
	ch      chan types.Line
	dropped atomic.Int64 // lines dropped because ch was full
}

func newAppLog(dir, app string, max int, log *slog.Logger) *appLog {
	return &appLog{
		app:      app,
		max:      max,
		path:     filepath.Join(dir, app+fileSuffix),
		log:      log.With("app", app),
		buf:      make([]types.Line, 0, min(max, 1024)),
		subs:     map[*follower]struct{}{},
		fileTail: newTailTimes(max),
	}
}

// lines returns the kept lines; l.mu is held.
func (l *appLog) lines() []types.Line { return l.buf[l.head:] }

// add keeps line in time order and reports whether it was new: a line
// equal to a kept one is not kept twice, and one older than every kept
// line of a full history is dropped. l.mu is held.
func (l *appLog) add(line types.Line) bool {
	kept := l.lines()
	n := len(kept)
	// Usually the newest line: search from the end.
	p := n
	if n > 0 && !line.Time.After(kept[n-1].Time) {
		p = sort.Search(n, func(i int) bool { return kept[i].Time.After(line.Time) })
	}
	for i := p - 1; i >= 0 && kept[i].Time.Equal(line.Time); i-- {
		if same(kept[i], line) {
			return false
		}
	}
	if n >= l.max && p == 0 {
		return false
	}
	if p == n {
		l.buf = append(l.buf, line)
	} else {
		l.buf = append(l.buf, types.Line{})
		copy(l.buf[l.head+p+1:], l.buf[l.head+p:])
		l.buf[l.head+p] = line
	}
	if len(l.buf)-l.head > l.max {
		l.buf[l.head] = types.Line{}
		l.head++
		if l.head >= l.max {
			m := copy(l.buf, l.buf[l.head:])
			clear(l.buf[m:])
			l.buf = l.buf[:m]
			l.head = 0
		}
	}
	return true
}

// same reports whether a and b are the same line.
func same(a, b types.Line) bool {
	return a.Msg == b.Msg && a.Source == b.Source && a.Job == b.Job && a.Type == b.Type && a.Index == b.Index
}

// insert keeps line, writes it to the file and hands it to the followers.
// It reports whether the line was new.
func (l *appLog) insert(line types.Line) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.insertLocked(line)
}

// insertAll inserts lines under one lock and returns how many were new.
func (l *appLog) insertAll(lines []types.Line) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range lines {
		if l.insertLocked(line) {
			n++
		}
	}
	return n
}

// insertLocked is insert with l.mu held.
func (l *appLog) insertLocked(line types.Line) bool {
	if !l.add(line) {
		return false
	}
	for f := range l.subs {
		if !f.q.Match(line) {
			continue
		}
		select {
		case f.ch <- line:
		default:
			f.dropped.Add(1)
		}
	}
	l.write(line)
	return true
}

// write appends line to the file, and rewrites the file to the kept lines
// once it holds twice as many. l.mu is held.
func (l *appLog) write(line types.Line) {
	if l.closed {
		return
	}
	if l.file == nil {
		if err := l.open(); err != nil {
			l.noteErr(err)
			return
		}
	}
	b, err := types.AppendJSON(l.w.AvailableBuffer(), line)
	if err != nil {
		l.noteErr(fmt.Errorf("encode line: %w", err))
		return
	}
	b = append(b, '\n')
	if _, err := l.w.Write(b); err != nil {
		l.noteErr(fmt.Errorf("write %s: %w", l.path, err))
		return
	}
	l.dirty = true
	l.fileLines++
	l.fileTail.record(line.Time)
	if l.fileLines >= 2*l.max {
		compact := l.rewrite
		if l.fileTail.lastAreNewest(len(l.lines())) {
			compact = l.rewriteTail
		}
		if err := compact(); err != nil {
			l.noteErr(err)
		}
	}
}

// open opens the file for appending. l.mu is held.
func (l *appLog) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", l.path, err)
	}
	l.file, l.w = f, bufio.NewWriterSize(f, 64<<10)
	return nil
}

// noteErr logs a failed write once until a flush succeeds again. l.mu is
// held.
func (l *appLog) noteErr(err error) {
	l.fileTail.ok = false // the file may lack lines
	if !l.failed {
		l.failed = true
		l.log.Error("cannot write the app's log file; lines are kept in memory only", "err", err)
	}
}

// flush writes buffered lines to the file. l.mu is held.
func (l *appLog) flush() {
	if !l.dirty || l.w == nil {
		return
	}
	if err := l.w.Flush(); err != nil {
		l.noteErr(fmt.Errorf("write %s: %w", l.path, err))
		return
	}
	l.dirty, l.failed = false, false
}

// rewrite replaces the file with the kept lines: a new file renamed into
// place, so a crash leaves either file whole. l.mu is held.
func (l *appLog) rewrite() error {
	tmp, err := os.CreateTemp(filepath.Dir(l.path), "."+l.app+".*")
	if err != nil {
		return fmt.Errorf("compact %s: %w", l.path, err)
	}
	defer os.Remove(tmp.Name()) // fails once renamed
	w := bufio.NewWriterSize(tmp, 64<<10)
	for _, line := range l.lines() {
		b, err := types.AppendJSON(w.AvailableBuffer(), line)
		if err == nil {
			_, err = w.Write(append(b, '\n'))
		}
		if err != nil {
			tmp.Close()
			return fmt.Errorf("compact %s: %w", l.path, err)
		}
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("compact %s: %w", l.path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("compact %s: %w", l.path, err)
	}
	if l.file != nil {
		l.file.Close()
		l.file, l.w = nil, nil
	}
	if err := os.Rename(tmp.Name(), l.path); err != nil {
		return fmt.Errorf("compact %s: %w", l.path, err)
	}
	l.fileLines, l.dirty = len(l.lines()), false
	l.fileTail.reset()
	for _, line := range l.lines() {
		l.fileTail.record(line.Time)
	}
	return l.open()
}

// rewriteTail replaces the file with its last len(l.lines()) lines, which
// are the kept lines when l.fileTail says so, copied as they are (in the kernel,
// where it can) into a new file renamed into place. l.mu is held.
func (l *appLog) rewriteTail() error {
	n := len(l.lines())
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("compact %s: %w", l.path, err)
	}
	src, err := os.Open(l.path)
	if err != nil {
		return fmt.Errorf("compact %s: %w", l.path, err)
	}
	defer src.Close()
	off, err := tailOffset(src, n)
	if err != nil {
		return fmt.Errorf("compact %s: %w", l.path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(l.path), "."+l.app+".*")
	if err != nil {
		return fmt.Errorf("compact %s: %w", l.path, err)
	}
	defer os.Remove(tmp.Name()) // fails once renamed
	if _, err := src.Seek(off, io.SeekStart); err != nil {
		tmp.Close()
		return fmt.Errorf("compact %s: %w", l.path, err)
	}
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return fmt.Errorf("compact %s: %w", l.path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("compact %s: %w", l.path, err)
	}
	l.file.Close()
	l.file, l.w = nil, nil
	if err := os.Rename(tmp.Name(), l.path); err != nil {
		return fmt.Errorf("compact %s: %w", l.path, err)
	}
	l.fileLines, l.dirty = n, false
	l.fileTail.keepLast(n)
	return l.open()
}

// tailOffset returns the offset in f, a file of whole lines, where its
// last n lines start.
func tailOffset(f *os.File, n int) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	end := st.Size()
	if n <= 0 {
		return end, nil
	}
	// The last byte ends the last line; count n more line breaks back.
	buf := make([]byte, 64<<10)
	pos, need := end-1, n
	for pos > 0 {
		size := min(int64(len(buf)), pos)
		chunk := buf[:size]
		if _, err := f.ReadAt(chunk, pos-size); err != nil {
			return 0, err
		}
		if c := bytes.Count(chunk, []byte{'\n'}); c < need {
			need -= c
			pos -= size
			continue
		}
		for i := len(chunk) - 1; i >= 0; i-- {
			if chunk[i] == '\n' {
				if need--; need == 0 {
					return pos - size + int64(i) + 1, nil
				}
			}
		}
	}
	return 0, nil
}

// load reads the app's file into memory: lines that do not parse (a torn
// last line after a crash) are skipped, and the file is rewritten when it
// had any, did not end with a line break, or holds more than the bound.
func (l *appLog) load() error {
	f, err := os.Open(l.path)
	if err != nil {
		return fmt.Errorf("load %s: %w", l.path, err)
	}
	defer f.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	br := bufio.NewReaderSize(f, 64<<10)
	var buf []byte
	read, bad, torn := 0, 0, false
	for {
		b, err := readLine(br, buf, types.MaxWireLine)
		buf = b[:0]
		if errors.Is(err, errLineTooLong) {
			bad++
			if err = skipLine(br); err == io.EOF {
				torn = true
				break
			}
			if err != nil {
				return fmt.Errorf("load %s: %w", l.path, err)
			}
			continue
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("load %s: %w", l.path, err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			torn = true
		}
		if len(bytes.TrimSpace(b)) > 0 {
			line, perr := ParseLine(b)
			if perr != nil || line.App != l.app {
				bad++
			} else {
				read++
				if l.add(line) {
					l.fileTail.record(line.Time)
				} else {
					l.fileTail.ok = false // the file holds a line not kept
				}
			}
		}
		if err == io.EOF {
			break
		}
	}
	l.fileLines = read
	if bad > 0 || torn || read > l.max {
		if bad > 0 || torn {
			l.log.Warn("skipped unreadable lines of the app's log file", "path", l.path, "lines", bad, "torn_end", torn)
		}
		return l.rewrite()
	}
	return nil
}

// tail returns the last q.Lines kept lines that match q.
func (l *appLog) tail(q types.Query) []types.Line {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tailLocked(q)
}

func (l *appLog) tailLocked(q types.Query) []types.Line {
	if q.Lines <= 0 {
		return nil
	}
	kept := l.lines()
	var out []types.Line
	for i := len(kept) - 1; i >= 0 && len(out) < q.Lines; i-- {
		if !q.Since.IsZero() && kept[i].Time.Before(q.Since) {
			break
		}
		if q.Match(kept[i]) {
			out = append(out, kept[i])
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// follow returns the last q.Lines matching lines and a follower that gets
// the matching lines kept from then on; the caller must unfollow it.
func (l *appLog) follow(q types.Query) ([]types.Line, *follower) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := &follower{q: q, ch: make(chan types.Line, followBuffer)}
	l.subs[f] = struct{}{}
	return l.tailLocked(q), f
}

func (l *appLog) unfollow(f *follower) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.subs, f)
}

// remove forgets the history: the lines go, the file is deleted and the
// followers' streams end (their channels are closed).
func (l *appLog) remove() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file != nil {
		_ = l.file.Close() // the file is deleted next
		l.file, l.w = nil, nil
	}
	l.closed, l.dirty = true, false
	l.buf, l.head = nil, 0
	for f := range l.subs {
		close(f.ch)
		delete(l.subs, f)
	}
	if err := os.Remove(l.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", l.path, err)
	}
	return nil
}

// close flushes and closes the file; lines inserted later are kept in
// memory only.
func (l *appLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flush()
	if l.file != nil {
		if err := l.file.Close(); err != nil {
			l.log.Error("close the app's log file", "path", l.path, "err", err)
		}
		l.file, l.w = nil, nil
	}
	l.closed = true
}

// tailTimes follows the times of the lines an app's file holds, in the
// order they were written, since the file was last written whole: the
// last max of them, and the newest of those before. The file's last n
// lines are then exactly the n newest lines it holds, and so the kept
// lines when n are kept, if each of them is newer than every line written
// before them.
type tailTimes struct {
	// ok is false when the file may hold lines that were not kept (a
	// duplicate read at load) or may lack some (a failed write), or a time
	// out of the range of Unix nanoseconds: then only a full rewrite
	// tells.
	ok     bool
	max    int
	times  []int64 // Unix nanoseconds; circular once len(times) == max
	next   int     // where the next time goes once times is full
	before int64   // the newest time of the lines written before times
}

func newTailTimes(max int) tailTimes {
	return tailTimes{ok: true, max: max, before: math.MinInt64}
}

// reset follows an empty file.
func (t *tailTimes) reset() {
	t.ok, t.times, t.next, t.before = true, t.times[:0], 0, math.MinInt64
}

// record follows a line of time at written at the end of the file.
func (t *tailTimes) record(at time.Time) {
	if !t.ok {
		return
	}
	if y := at.Year(); y < 1678 || y > 2261 {
		t.ok = false
		return
	}
	ns := at.UnixNano()
	if len(t.times) < t.max {
		t.times = append(t.times, ns)
		return
	}
	t.before = max(t.before, t.times[t.next])
	t.times[t.next] = ns
	t.next = (t.next + 1) % t.max
}

// at returns the time of the i-th followed line, oldest first.
func (t *tailTimes) at(i int) int64 {
	if len(t.times) < t.max {
		return t.times[i]
	}
	return t.times[(t.next+i)%t.max]
}

// lastAreNewest reports whether the file's last n lines are newer than
// all the lines before them.
func (t *tailTimes) lastAreNewest(n int) bool {
	if !t.ok || n > len(t.times) {
		return false
	}
	split := len(t.times) - n
	newestBefore := t.before
	for i := range split {
		newestBefore = max(newestBefore, t.at(i))
	}
	for i := split; i < len(t.times); i++ {
		if t.at(i) <= newestBefore {
			return false
		}
	}
	return true
}

// keepLast follows a file cut to its last n lines.
func (t *tailTimes) keepLast(n int) {
	last := make([]int64, 0, n)
	for i := len(t.times) - n; i < len(t.times); i++ {
		last = append(last, t.at(i))
	}
	t.times, t.next, t.before = append(t.times[:0], last...), 0, math.MinInt64
}
