package controller

import (
	"context"
	"encoding/json"
	"net/http"

	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/blobstore"
	"github.com/gantryhq/gantry/layer1/controller/gc"
)

// gc answers POST /v1/gc (admin only): it runs one collection now and
// answers its report. The header is sent first, so that a long collection
// does not run into the client's wait for it; the collection goes on if
// the client leaves.
func (s *Server) gc(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if err := http.NewResponseController(w).Flush(); err != nil {
		s.log.Debug("flush the header of POST /v1/gc", "err", err)
	}
	rep := s.collector.Collect(context.WithoutCancel(r.Context()))
	if err := json.NewEncoder(w).Encode(rep); err != nil {
		s.log.Debug("the client of POST /v1/gc left before the report", "err", err)
	}
}

// newCollector returns the garbage collector of s (see package gc).
func (s *Server) newCollector() *gc.Collector {
	return gc.New(gc.Config{
		Etcd:         s.cfg.Etcd,
		Space:        s.space,
		Store:        s.store,
		Blobs:        gcBlobs{s},
		Hosts:        gcHosts{s},
		StackImage:   s.cfg.StackImage,
		BuilderImage: s.cfg.BuilderImage,
		SlugsKept:    s.cfg.slugsKept(),
		BuildTimeout: s.cfg.buildTimeout(),
		Interval:     s.cfg.gcInterval(),
		Locks:        lockConns{s},
		Logger:       s.log,
	})
}

// gcBlobs opens the controller's blobstore for the collections.
type gcBlobs struct{ s *Server }

var _ gc.Blobs = gcBlobs{}

// Open returns the blobstore, opening it when it is not open yet.
func (b gcBlobs) Open(ctx context.Context) (*blobstore.Store, error) { return b.s.blobStore(ctx) }

// gcHosts reaches the host agents for the collections.
type gcHosts struct{ s *Server }

var _ gc.Hosts = gcHosts{}

// List returns the hosts whose lease is alive and that have an API.
func (h gcHosts) List(ctx context.Context) ([]keyspace.Host, error) { return h.s.listHosts(ctx) }

// GC asks the agent at apiURL to collect.
func (h gcHosts) GC(ctx context.Context, apiURL string, req hostclient.GCRequest) (hostclient.GCResult, error) {
	return h.s.hosts.get(apiURL).GC(ctx, req)
}
