package slugbuilder

import (
	"context"
	"os"
	"path/filepath"
)

// staticBuildpack serves a static site: an app with an index.html at its
// root or a public/ folder. Nothing is compiled; the web process is the
// slug runner's file server, which serves public/ when it exists and the
// app's root otherwise.
type staticBuildpack struct{}

var _ buildpack = staticBuildpack{}

// staticCommand is the default web process of a static site.
const staticCommand = "gantryd slugrunner static"

func (staticBuildpack) name() string { return builtinPrefix + "static" }

func (staticBuildpack) detect(_ context.Context, s *stage) (string, bool, error) {
	if isDir(filepath.Join(s.buildDir, "public")) || isFile(filepath.Join(s.buildDir, "index.html")) {
		return "Static HTML", true, nil
	}
	return "", false, nil
}

func (staticBuildpack) compile(_ context.Context, s *stage) error {
	root := "the app's root"
	if isDir(filepath.Join(s.buildDir, "public")) {
		root = "public/"
	}
	s.out.info("Nothing to compile: %s is served as it is", root)
	return nil
}

func (staticBuildpack) release(context.Context, *stage) (map[string]string, error) {
	return map[string]string{"web": staticCommand}, nil
}

// procfileBuildpack takes any app with a Procfile that no other buildpack
// claims: its commands run as they are, so there is nothing to compile.
type procfileBuildpack struct{}

var _ buildpack = procfileBuildpack{}

func (procfileBuildpack) name() string { return builtinPrefix + "procfile" }

func (procfileBuildpack) detect(_ context.Context, s *stage) (string, bool, error) {
	return "Procfile", isFile(filepath.Join(s.buildDir, "Procfile")), nil
}

func (procfileBuildpack) compile(_ context.Context, s *stage) error {
	s.out.info("Nothing to compile: the Procfile's commands run as they are")
	return nil
}

func (procfileBuildpack) release(context.Context, *stage) (map[string]string, error) {
	return nil, nil
}

func isFile(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.Mode().IsRegular()
}

func isDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}
