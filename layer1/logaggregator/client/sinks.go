package client

import (
	"time"

	"github.com/gantryhq/gantry/layer1/logaggregator/types"
)

// Event ships msg as a platform event of app (source gantry), timed now.
// It makes a Shipper the controller's EventSink.
func (s *Shipper) Event(app, msg string) {
	s.Ship(types.Line{App: app, Source: types.SourceGantry, Time: time.Now().UTC(), Msg: types.CleanMsg(msg)})
}

// RouterLine ships line as the router's line of a request to app. It makes
// a Shipper the router's AppLogSink.
// The line is copied into the Shipper's buffer as a frame, without
// allocating, unless it needs cleaning (see types.CleanMsg).
func (s *Shipper) RouterLine(app string, at time.Time, line []byte) {
	l := types.Line{App: app, Source: types.SourceRouter, Time: at.UTC()}
	switch {
	case !types.ValidApp(app) || at.IsZero():
		s.invalid.Add(1)
	case types.ValidMsg(line) != nil:
		l.Msg = types.CleanMsg(string(line))
		s.Ship(l)
	default:
		s.shipMsg(l, line)
	}
}

// JobLine ships a line of a job's output as an app line. With JobEvent it
// makes a Shipper the host agent's LogSink.
func (s *Shipper) JobLine(app, typ, job string, index int, at time.Time, text string) {
	s.Ship(types.Line{App: app, Source: types.SourceApp, Type: typ, Job: job, Index: index, Time: at.UTC(), Msg: types.CleanMsg(text)})
}

// JobEvent ships msg as the host agent's event about a job (source
// gantry).
func (s *Shipper) JobEvent(app, typ, job string, index int, at time.Time, msg string) {
	s.Ship(types.Line{App: app, Source: types.SourceGantry, Type: typ, Job: job, Index: index, Time: at.UTC(), Msg: types.CleanMsg(msg)})
}
