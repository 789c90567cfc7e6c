package controller

// EventSink receives the platform's events about an app (a deployment
// started or ended, a scale, a restart) for the app's log, where they show
// with the prefix "gantry:". Event must not block: a sink that cannot keep
// up drops events rather than slow the API down.
type EventSink interface {
	Event(app, msg string)
}

// events sends to Config.Events, or nowhere when it is nil.
type events struct{ sink EventSink }

// emit records msg as an event of app.
func (e events) emit(app, msg string) {
	if e.sink != nil {
		e.sink.Event(app, msg)
	}
}
