package cli

import "runtime/debug"

// Version is the client version, set at link time with
// -ldflags "-X github.com/gantryhq/gantry/cli.Version=0.1.0" (cmd/gantry
// also copies its main.version into it). When it is empty, the module
// version recorded by `go install` is used, else "dev".
var Version string

// clientVersion returns the version gantry reports for itself.
func clientVersion() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
