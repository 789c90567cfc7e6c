package stack

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/image"
)

// tarExcludes are left out of the images: what the engine provides at run
// time (/dev, /proc, /sys, hostname, resolv.conf, which debootstrap copies
// from the host), apt's package lists and caches, and logs.
var tarExcludes = []string{
	"./dev/*", "./proc/*", "./sys/*", "./tmp/*",
	"./etc/hostname", "./etc/resolv.conf",
	"./var/lib/apt/lists/*",
	"./var/cache/apt/*.bin", "./var/cache/apt/archives/*.deb", "./var/cache/apt/archives/partial/*",
	"./var/cache/debconf/*-old",
	"./var/log/*.log", "./var/log/apt/*",
}

// imageChanges are the Dockerfile instructions applied to an imported root
// file system of the given kind ("stack" or "builder").
func imageChanges(version, kind string) []string {
	return []string{
		"ENV PATH=" + imagePath,
		"ENV LANG=C.UTF-8",
		"WORKDIR " + appHome,
		`CMD ["bash"]`,
		fmt.Sprintf("LABEL %s=%q %s=%q", LabelVersion, version, LabelImage, kind),
	}
}

// importRootfs streams rootfs through tar into the engine as an untagged
// image of the given kind and returns its ID. Nothing is held in memory:
// tar writes into the request body as the engine reads it.
func (b *build) importRootfs(ctx context.Context, rootfs, kind string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, importTimeout)
	defer cancel()

	args := []string{"--create", "--file=-", "--directory=" + rootfs, "--numeric-owner", "--one-file-system",
		"--xattrs", "--xattrs-include=security.capability", "--anchored", "--wildcards"}
	for _, p := range tarExcludes {
		args = append(args, "--exclude="+p)
	}
	args = append(args, ".")
	cmd := exec.CommandContext(ctx, "tar", args...)
	cmd.Dir = "/"
	pr, pw := io.Pipe()
	out := newOutput(b.log, "tar")
	cmd.Stdout, cmd.Stderr = pw, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("import %s: start tar: %w", kind, err)
	}
	tarDone := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		out.flush()
		if err != nil {
			err = fmt.Errorf("tar: %w; last output:\n%s", err, out.tail())
		}
		// A failed tar fails the upload instead of ending it early.
		pw.CloseWithError(err)
		tarDone <- err
	}()

	id, err := b.upload(ctx, pr, kind)
	if err != nil {
		pr.CloseWithError(err)
		cancel()
	}
	if tarErr := <-tarDone; tarErr != nil && err == nil {
		err = tarErr
	}
	if err != nil {
		if id != "" {
			b.removeImage(ctx, id)
		}
		return "", fmt.Errorf("import %s: %w", kind, err)
	}
	return id, nil
}

// upload sends the tar stream to the engine and returns the new image ID.
func (b *build) upload(ctx context.Context, tarStream io.Reader, kind string) (string, error) {
	body, err := b.cfg.Docker.ImageImport(ctx, image.ImportSource{Source: tarStream, SourceName: "-"}, "",
		image.ImportOptions{Changes: imageChanges(b.cfg.Version, kind)})
	if err != nil {
		return "", err
	}
	defer body.Close()
	return readImageID(body, "import", io.Discard)
}
