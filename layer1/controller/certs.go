package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/sealed"
	"github.com/gantryhq/gantry/layer1/acme"
	"github.com/gantryhq/gantry/layer1/controller/pglock"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// certLockSpace is the space of the PostgreSQL advisory lock of a pass
// of the certificates ("acme").
const certLockSpace int32 = 0x61636d65

// certManager obtains and renews with ACME the certificates of the custom
// routes and of the apps' default domains <app>.<domain> (when the
// platform's domain is one a certificate can be issued for, see
// certifiable). The state of each (pending, issued, failed with the
// server's problem and the next retry) is kept in PostgreSQL with the
// route, or in default_certs for a default domain, so a restart resumes
// where it stopped: an order cut short is started again. Obtained
// certificates reach the routers through the etcd mirror, like uploaded
// ones.
type certManager struct {
	cfg    ACMEConfig // with defaults
	store  *store.Store
	sealer *sealed.Sealer
	etcd   *clientv3.Client
	space  keyspace.Space
	// appDomain is the platform's domain when its apps' default domains
	// get certificates, else "".
	appDomain string
	// sync mirrors an app's routes into etcd.
	sync func(ctx context.Context, app string) error
	// conns hold the lock of a pass: one controller of the cluster at a
	// time orders certificates, so that no two order the same one.
	conns pglock.Conns
	log   *slog.Logger
	wake  chan struct{}

	// issuer is made on the first pass that needs it (it needs the
	// account key from PostgreSQL).
	issuerMu sync.Mutex
	issuer   *acme.Issuer
	// marked is set once the routes added before ACME was on are marked
	// pending.
	marked bool
}

func newCertManager(cfg ACMEConfig, st *store.Store, sealer *sealed.Sealer, etcd *clientv3.Client, space keyspace.Space,
	appDomain string, sync func(context.Context, string) error, conns pglock.Conns, log *slog.Logger) *certManager {
	if cfg.Directory == "" {
		cfg.Directory = acme.LetsEncrypt
	}
	if cfg.RenewBefore == 0 {
		cfg.RenewBefore = DefaultRenewBefore
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = DefaultCertCheckInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &certManager{cfg: cfg, store: st, sealer: sealer, etcd: etcd, space: space, appDomain: appDomain, sync: sync,
		conns: conns, log: log, wake: make(chan struct{}, 1)}
}

// poke makes run check the routes now.
func (c *certManager) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// run checks the routes at once, every CheckInterval and when poked, until
// ctx ends.
func (c *certManager) run(ctx context.Context) {
	c.log.Info("automatic certificates on", "directory", c.cfg.Directory, "email", c.cfg.Email,
		"renew_before", c.cfg.RenewBefore, "check_interval", c.cfg.CheckInterval, "default_domains", c.appDomain != "")
	tick := time.NewTicker(c.cfg.CheckInterval)
	defer tick.Stop()
	for {
		if err := c.pass(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("certificate check failed; retrying at the next interval", "interval", c.cfg.CheckInterval, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.wake:
		}
	}
}

// pass obtains the certificates that are due: pending ones, failed ones
// whose retry time has come, and issued ones within RenewBefore of their
// expiry. One domain's failure is recorded with it and does not stop the
// others. Each pass first makes every app's default domain want a
// certificate (level-triggered: apps created while the controller was
// down, or before ACME was on, included).
func (c *certManager) pass(ctx context.Context) error {
	// The controllers of a cluster's hosts take turns; each sees what
	// the one before it obtained.
	unlock, err := pglock.Lock(ctx, c.conns, pglock.Key{Space: certLockSpace, Name: "acme"}, nil, c.log)
	if err != nil {
		return err
	}
	defer unlock()
	if !c.marked {
		n, err := c.store.WantCerts(ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			c.log.Info("routes without a certificate will get one", "routes", n)
		}
		c.marked = true
	}
	added, deleted, err := c.store.WantDefaultCerts(ctx, c.appDomain)
	if err != nil {
		return err
	}
	if added > 0 || deleted > 0 {
		c.log.Info("default domains' certificates reconciled", "domain", c.appDomain, "added", added, "deleted", deleted)
	}
	routes, err := c.store.CertRoutes(ctx)
	if err != nil {
		return err
	}
	for _, r := range routes {
		if ctx.Err() != nil {
			return nil
		}
		if !c.due(r) {
			continue
		}
		c.obtain(ctx, r)
	}
	return nil
}

// due reports whether r's certificate should be obtained now.
func (c *certManager) due(r store.CertRoute) bool {
	now := c.cfg.Now()
	switch r.State {
	case types.CertPending:
		return true
	case types.CertFailed:
		return !now.Before(r.RetryAt)
	case types.CertIssued:
		return !now.Before(r.NotAfter.Add(-c.cfg.RenewBefore))
	}
	return false
}

// obtain runs one order for r and records its outcome.
func (c *certManager) obtain(ctx context.Context, r store.CertRoute) {
	log := c.log.With("domain", r.Domain, "app", r.App, "default", r.Default)
	iss, err := c.issuerFor(ctx)
	if err == nil {
		log.Info("obtaining certificate", "state", r.State, "not_after", r.NotAfter)
		var cert acme.Certificate
		if cert, err = iss.Issue(ctx, r.Domain); err == nil {
			err = c.save(ctx, r, cert)
			if err == nil || errors.Is(err, store.ErrRouteNotFound) {
				return
			}
		}
	}
	if ctx.Err() != nil {
		return // stopping: the order is started again after the restart
	}
	failures := r.Failures + 1
	retryAt := acme.RetryAt(c.cfg.Now(), failures, err)
	problem := acme.Problem(err)
	log.Warn("certificate not obtained", "problem", problem, "failures", failures, "retry_at", retryAt)
	if err := c.store.SetRouteCertFailure(ctx, r, problem, failures, retryAt); err != nil && !errors.Is(err, store.ErrRouteNotFound) {
		log.Warn("certificate failure not recorded", "err", err)
	}
}

// save seals and stores cert for r and mirrors r's app to the routers.
func (c *certManager) save(ctx context.Context, r store.CertRoute, cert acme.Certificate) error {
	sealed, err := c.sealer.Seal(cert.KeyPEM)
	if err != nil {
		return err
	}
	if err := c.store.SetRouteCert(ctx, r, cert.CertPEM, sealed, cert.NotAfter); err != nil {
		return err
	}
	c.log.Info("certificate stored", "domain", r.Domain, "app", r.App, "not_after", cert.NotAfter)
	if err := c.sync(context.WithoutCancel(ctx), r.App); err != nil {
		c.log.Warn("mirror to etcd failed; the periodic re-sync retries", "app", r.App, "err", err)
	}
	return nil
}

// issuerFor returns the issuer, making it (and the account key, stored
// sealed in PostgreSQL) on first use.
func (c *certManager) issuerFor(ctx context.Context) (*acme.Issuer, error) {
	c.issuerMu.Lock()
	defer c.issuerMu.Unlock()
	if c.issuer != nil {
		return c.issuer, nil
	}
	newKey, err := acme.NewAccountKey()
	if err != nil {
		return nil, err
	}
	sealedNew, err := c.sealer.Seal(newKey)
	if err != nil {
		return nil, err
	}
	sealed, err := c.store.ACMEAccountKey(ctx, c.cfg.Directory, sealedNew)
	if err != nil {
		return nil, err
	}
	keyPEM, err := c.sealer.Open(sealed)
	if err != nil {
		return nil, fmt.Errorf("acme account key: %w (was secrets.key replaced?)", err)
	}
	key, err := acme.ParseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	hc, err := acme.HTTPClientWithCA(c.cfg.CAFile)
	if err != nil {
		return nil, err
	}
	c.issuer, err = acme.NewIssuer(acme.Config{
		Directory: c.cfg.Directory, Email: c.cfg.Email, AccountKey: key, HTTPClient: hc,
		Challenges: acme.EtcdChallenges{Etcd: c.etcd, Space: c.space}, Logger: c.log,
	})
	return c.issuer, err
}
