package up

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/layer1/logaggregator"
	logclient "github.com/gantryhq/gantry/layer1/logaggregator/client"
)

// logPlane is the node's log aggregator, which starts before the other
// roles and stops after them so that their last lines reach it, and the
// shippers of the host agent, the router and the controller.
type logPlane struct {
	url        string
	host       *logclient.Shipper
	router     *logclient.Shipper
	controller *logclient.Shipper

	srv    *logaggregator.Server
	cancel context.CancelFunc
	served chan error
	log    *slog.Logger
}

// startLogs starts the aggregator of node n on cfg.LogAddr.
func startLogs(cfg Config, n *node.Node, log *slog.Logger) (*logPlane, error) {
	srv, err := logaggregator.New(n.LogAggregator(logaggregator.Config{
		Lines:  cfg.LogLines,
		Logger: log,
	}))
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.LogAddr)
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("log aggregator: listen on %s: %w", cfg.LogAddr, err)
	}
	p := &logPlane{url: "http://" + ln.Addr().String(), srv: srv, served: make(chan error, 1), log: log}
	var ctx context.Context
	ctx, p.cancel = context.WithCancel(context.Background())
	go func() { p.served <- srv.Serve(ctx, ln) }()
	shipper := func(component string) (*logclient.Shipper, error) { return n.Shipper(p.url, component, log) }
	if p.host, err = shipper("host"); err == nil {
		if p.router, err = shipper("router"); err == nil {
			p.controller, err = shipper("controller")
		}
	}
	if err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// stop ships what the host agent, the router and the controller hold, then stops the
// aggregator and closes its files.
func (p *logPlane) stop() {
	for _, s := range []*logclient.Shipper{p.host, p.router, p.controller} {
		if s == nil {
			continue
		}
		if err := s.Close(); err != nil {
			p.log.Warn("log lines lost at shutdown", "err", err)
		}
	}
	p.cancel()
	if err := <-p.served; err != nil && !errors.Is(err, context.Canceled) {
		p.log.Error("log aggregator", "err", err)
	}
	p.srv.Close()
}
