package up

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/layer0/host"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/argv"
	"github.com/gantryhq/gantry/layer1/controller/mirror"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// The platform's own apps, each with one process type named after its
// role.
const (
	AppScheduler     = types.SystemAppPrefix + "scheduler"
	AppController    = types.SystemAppController
	AppRouter        = types.SystemAppPrefix + "router"
	AppGitReceiver   = types.SystemAppPrefix + "gitreceiver"
	AppLogAggregator = types.SystemAppPrefix + "logaggregator"
)

// systemApps returns the system apps of node n as cfg sets them up: an
// image release of the platform image each, running `gantryd <role> --data
// <data> ...` on the host's network with the data dir mounted, one job
// each. buildEnv is the controller's build settings. They come in the
// order an upgrade deploys them: the log aggregator, the git receiver, the
// scheduler, the controller, the router.
//
// Every role with a port binds it so that a deployment can start its new
// job before it stops the old one (--reuse-port; the router takes the old
// router's listeners through its handover socket and, once drained, waits
// for its SIGTERM: --stay-after-handover), and its health check is its
// own readiness socket (types.SystemProcess.Ready), which only the new
// job's process answers.
func systemApps(cfg Config, n *node.Node, image string, buildEnv map[string]string) []store.SystemApp {
	// One template serves every host of the cluster: the host agent puts
	// its own data dir, address and etcd endpoints in place of the
	// placeholders (host.Config.SystemVars). Every role runs one job on
	// every host (types.SystemProcess.PerHost): a host serves the API,
	// the apps and git push itself, and the schedulers elect a leader, so
	// that the loss of any host leaves one to place its jobs elsewhere.
	binds := []keyspace.Bind{{Source: varData, Target: varData}}
	etcd, api := varEtcd, node.APIURL(hostTemplate(cfg, cfg.APIAddr))
	logURL := "http://" + hostTemplate(cfg, cfg.LogAddr)
	app := func(name, typ string, port int, health string, config map[string]string, args ...string) store.SystemApp {
		binds := binds
		if name == AppController && cfg.ACMECAFile != "" {
			binds = append(slices.Clone(binds), keyspace.Bind{Source: cfg.ACMECAFile, Target: cfg.ACMECAFile, ReadOnly: true})
		}
		return store.SystemApp{
			Name:        name,
			Image:       image,
			Description: "gantryd up " + cfg.Version,
			Config:      config,
			Processes: map[string]types.Process{typ: {
				Command:    argv.Join(append([]string{"gantryd"}, args...)),
				HealthPath: health,
				System:     &types.SystemProcess{Port: port, Binds: binds, Ready: port > 0, PerHost: true},
			}},
			Counts: map[string]int{typ: 1},
		}
	}
	logArgs := []string{"logaggregator", "--data", varData, "--addr", hostTemplate(cfg, cfg.LogAddr), "--reuse-port"}
	if cfg.LogLines > 0 {
		logArgs = append(logArgs, "--lines", strconv.Itoa(cfg.LogLines))
	}
	ctlArgs := []string{"controller", "--data", varData, "--addr", hostTemplate(cfg, cfg.APIAddr),
		"--database-url-file", varData + "/" + node.DatabaseURLFile,
		"--etcd", etcd, "--log-url", logURL, "--internal-url", api, "--git-url", sshBaseURL(hostTemplate(cfg, cfg.SSHAddr)),
		"--router-http-url", publicURL("http", hostTemplate(cfg, cfg.HTTPAddr)),
		"--router-https-url", publicURL("https", hostTemplate(cfg, cfg.HTTPSAddr)),
		"--domain", cfg.Domain, "--reuse-port"}
	if cfg.DeployTimeout > 0 {
		ctlArgs = append(ctlArgs, "--deploy-timeout", cfg.DeployTimeout.String())
	}
	if cfg.SlugsKept > 0 {
		ctlArgs = append(ctlArgs, "--slugs-kept", strconv.Itoa(cfg.SlugsKept))
	}
	if cfg.GCInterval > 0 {
		ctlArgs = append(ctlArgs, "--gc-interval", cfg.GCInterval.String())
	}
	if cfg.DiskWarningPercent > 0 {
		ctlArgs = append(ctlArgs, "--disk-warning-percent", strconv.Itoa(cfg.DiskWarningPercent))
	}
	if cfg.ACMEEmail != "" {
		ctlArgs = append(ctlArgs, "--acme-email", cfg.ACMEEmail)
		if cfg.ACMEDirectory != "" {
			ctlArgs = append(ctlArgs, "--acme-directory", cfg.ACMEDirectory)
		}
		if cfg.ACMECAFile != "" {
			// Mounted read-only at its own path into the controller's
			// container.
			ctlArgs = append(ctlArgs, "--acme-ca-file", cfg.ACMECAFile)
		}
	}
	routerArgs := []string{"router", "--data", varData, "--http-addr", hostTemplate(cfg, cfg.HTTPAddr),
		"--https-addr", hostTemplate(cfg, cfg.HTTPSAddr), "--etcd", etcd, "--log-url", logURL,
		"--metrics-addr", hostTemplate(cfg, net.JoinHostPort(metricsHost(cfg.HTTPAddr), "0")),
		"--stay-after-handover"}
	l := cfg.RouterLimits
	for _, o := range []struct {
		flag string
		d    time.Duration
	}{{"--client-body-timeout", l.ClientBodyTimeout}, {"--send-timeout", l.SendTimeout}, {"--tunnel-idle-timeout", l.TunnelIdleTimeout}} {
		if o.d > 0 {
			routerArgs = append(routerArgs, o.flag, o.d.String())
		}
	}
	if l.MaxConns > 0 {
		routerArgs = append(routerArgs, "--max-conns", strconv.Itoa(l.MaxConns))
	}
	if cfg.AccessLogPath != "" {
		routerArgs = append(routerArgs, "--access-log", dataTemplate(n, cfg.AccessLogPath))
	}
	return []store.SystemApp{
		app(AppLogAggregator, "logaggregator", port(cfg.LogAddr), "", nil, logArgs...),
		app(AppGitReceiver, "gitreceiver", port(cfg.SSHAddr), "", nil,
			"gitreceiver", "serve", "--data", varData, "--addr", hostTemplate(cfg, cfg.SSHAddr), "--controller", api, "--reuse-port"),
		app(AppScheduler, "scheduler", 0, "", nil, "scheduler", "--data", varData, "--etcd", etcd),
		app(AppController, "controller", port(cfg.APIAddr), "/healthz", buildEnv, ctlArgs...),
		app(AppRouter, "router", port(cfg.HTTPAddr), "", nil, routerArgs...),
	}
}

// The placeholders of the system apps' template (see systemApps).
var (
	varData = "{{" + host.SystemVarData + "}}"
	varAddr = "{{" + host.SystemVarAddr + "}}"
	varEtcd = "{{" + host.SystemVarEtcd + "}}"
)

// hostTemplate is addr (host:port) for the system apps' template: a
// listener on the advertised address binds each host's own, the others
// (an explicit address of their own) stay as they are.
func hostTemplate(cfg Config, addr string) string {
	h, p, err := net.SplitHostPort(addr)
	if err != nil || h != cfg.AdvertiseAddr {
		return addr
	}
	return net.JoinHostPort(varAddr, p)
}

// dataTemplate is path for the system apps' template: a path in n's data
// dir is made relative to each host's own.
func dataTemplate(n *node.Node, path string) string {
	if rel, ok := strings.CutPrefix(path, n.Dir+"/"); ok {
		return varData + "/" + rel
	}
	return path
}

// port is the port of addr (host:port, validated).
func port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

// inception places the scheduler's first job: the scheduler must run as a
// job it placed itself, so `gantryd up` acts as the scheduler once. It
// writes the system apps' formations with the controller's mirror code
// (the values the controller will write: the scheduler places the
// controller before any controller runs) and, only when no job of the
// scheduler is assigned on any host, one assignment of it on this host,
// which the agent starts and the scheduler then finds satisfying its
// formation.
func inception(ctx context.Context, etcd *clientv3.Client, st *store.Store, n *node.Node, apps []store.SystemApp, domain string, log *slog.Logger) error {
	space := keyspace.MustNew(n.Cluster)
	m := mirror.New(mirror.Config{Etcd: etcd, Space: space, Source: st,
		Domain: func(app string) string { return app + "." + domain }, Logger: log})
	for _, a := range apps {
		if err := m.SyncApp(ctx, a.Name); err != nil {
			return fmt.Errorf("inception: the formation of %s: %w", a.Name, err)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	forms, err := etcd.Get(rctx, space.AppFormations(AppScheduler), clientv3.WithPrefix())
	cancel()
	if err != nil {
		return fmt.Errorf("inception: read the scheduler's formation: %w", err)
	}
	if len(forms.Kvs) != 1 {
		return fmt.Errorf("inception: %d formations of %s in etcd, want 1", len(forms.Kvs), AppScheduler)
	}
	var f keyspace.Formation
	if err := json.Unmarshal(forms.Kvs[0].Value, &f); err != nil {
		return fmt.Errorf("inception: the scheduler's formation: %w", err)
	}
	rctx, cancel = context.WithTimeout(ctx, dockerTimeout)
	asgs, err := etcd.Get(rctx, space.Assignments(), clientv3.WithPrefix())
	cancel()
	if err != nil {
		return fmt.Errorf("inception: read the assignments: %w", err)
	}
	for _, kv := range asgs.Kvs {
		var a keyspace.Assignment
		if json.Unmarshal(kv.Value, &a) == nil && a.Spec.App == AppScheduler {
			log.Info("inception: the scheduler has a job already", "job", a.JobID, "host", a.HostID)
			return nil
		}
	}
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("inception: %w", err)
	}
	a := keyspace.Assignment{
		JobID:     AppScheduler + "." + f.Type + ".1." + hex.EncodeToString(b),
		HostID:    n.HostID,
		Spec:      f.Template,
		Index:     1,
		CreatedAt: time.Now().UTC(),
	}
	val, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("inception: %w", err)
	}
	key := space.Assignment(n.HostID, a.JobID)
	wctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	_, err = etcd.Put(wctx, key, string(val))
	cancel()
	if err != nil {
		return fmt.Errorf("inception: assign the scheduler's job: %w", err)
	}
	log.Info("inception: assigned the scheduler's first job to this host", "job", a.JobID)
	return nil
}
