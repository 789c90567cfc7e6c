package main

import (
	"fmt"
	"net"
	"strconv"

	"github.com/urfave/cli/v2"
)

// upListeners are gantryd up's listeners with their default ports. Each
// binds the advertised IP (--advertise) unless its own flag is set, so
// hosts on 127.0.0.2, 127.0.0.3, ... share one machine with no port flags.
var upListeners = []struct {
	flag  string
	port  int
	usage string
	// inProcessFree makes the default port 0 (a free one) in process.
	inProcessFree bool
}{
	{"api-addr", 7070, "controller API listen address", false},
	{"http-addr", 8080, "router HTTP listen address", false},
	{"https-addr", 8443, "router HTTPS listen address", false},
	{"ssh-addr", 2222, "git-over-SSH listen address", false},
	{"host-api-addr", 7071, "host agent API listen address", false},
	{"log-addr", 7072, "log aggregator listen address", true},
	{"etcd-client-addr", 7379, "embedded etcd client listen address", false},
	{"etcd-peer-addr", 7380, "embedded etcd peer listen address", false},
	{"postgres-addr", 7432, "the PostgreSQL container's listen address; not with --in-process", false},
}

// listenFlags are the flags of upListeners.
func listenFlags() []cli.Flag {
	flags := make([]cli.Flag, 0, len(upListeners))
	for _, l := range upListeners {
		dflt := fmt.Sprintf("the --advertise address, port %d", l.port)
		if l.inProcessFree {
			dflt += "; with --in-process, port 0: a free one"
		}
		flags = append(flags, &cli.StringFlag{Name: l.flag, Usage: fmt.Sprintf("%s (default: %s)", l.usage, dflt)})
	}
	return flags
}

// listenAddrs gives each of upListeners its address: the flag's value when
// it is set (flag reports it), else the advertised IP with the default
// port. In process the log aggregator takes a free port (inProcessFree):
// the roles reach it at the address it got, while as containers its job's
// release holds a fixed one.
func listenAddrs(advertise string, containers bool, flag func(name string) (string, bool)) map[string]string {
	addrs := make(map[string]string, len(upListeners))
	for _, l := range upListeners {
		if v, ok := flag(l.flag); ok {
			addrs[l.flag] = v
			continue
		}
		port := l.port
		if l.inProcessFree && !containers {
			port = 0
		}
		addrs[l.flag] = net.JoinHostPort(advertise, strconv.Itoa(port))
	}
	return addrs
}
