package stack

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	dockerbuild "github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
)

// contextFile is one file of a build context.
type contextFile struct {
	// Name is the path in the context, e.g. "Dockerfile".
	Name string
	// Mode is the file mode, e.g. 0o644.
	Mode int64
	// Data is the content; when nil, the content is read from Path.
	Data []byte
	// Path is a host file whose content is streamed, when Data is nil.
	Path string
}

// buildContext returns a tar stream of files, written as the reader is
// read, so that a large binary is never held in memory.
func buildContext(files []contextFile) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(writeContext(pw, files))
	}()
	return pr
}

func writeContext(w io.Writer, files []contextFile) error {
	tw := tar.NewWriter(w)
	for _, f := range files {
		if err := addContextFile(tw, f); err != nil {
			return fmt.Errorf("build context: %s: %w", f.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("build context: %w", err)
	}
	return nil
}

func addContextFile(tw *tar.Writer, f contextFile) error {
	// A fixed time keeps the context, and so the engine's build cache,
	// the same for the same content.
	hdr := &tar.Header{Name: f.Name, Mode: f.Mode, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
	if f.Data != nil {
		hdr.Size = int64(len(f.Data))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(f.Data)
		return err
	}
	file, err := os.Open(f.Path)
	if err != nil {
		return err
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return err
	}
	hdr.Size = fi.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(tw, file)
	if err == nil && n != fi.Size() {
		err = fmt.Errorf("%s changed while it was read", f.Path)
	}
	return err
}

// dockerfileLabels returns the arguments of one Dockerfile LABEL
// instruction setting labels, sorted by key, the values quoted. One
// instruction makes one build step.
func dockerfileLabels(labels map[string]string) string {
	keys := slices.Sorted(maps.Keys(labels))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Quote(labels[k])
	}
	return strings.Join(parts, " ")
}

// imageBuild builds an image with the engine's classic builder from files
// (a Dockerfile among them) and returns the ID of the image. The build's
// output goes to log at debug level; its last lines are part of an error.
func imageBuild(ctx context.Context, docker *client.Client, log *slog.Logger, timeout time.Duration,
	files []contextFile, opts dockerbuild.ImageBuildOptions) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	body := buildContext(files)
	defer body.Close()
	opts.Version = dockerbuild.BuilderV1
	opts.Dockerfile = "Dockerfile"
	opts.Remove, opts.ForceRemove = true, true
	resp, err := docker.ImageBuild(ctx, body, opts)
	if err != nil {
		return "", fmt.Errorf("docker build: %w", err)
	}
	defer resp.Body.Close()
	out := newOutput(log, "docker build")
	id, err := readImageID(resp.Body, "build", out)
	out.flush()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return "", fmt.Errorf("docker build: %w; last output:\n%s", err, out.tail())
	}
	return id, nil
}

// readImageID reads the engine's JSON message stream of an image build or
// import (what names which, for errors), writes its text to out and
// returns the ID of the new image: a build reports it in an aux message,
// an import as a status.
func readImageID(r io.Reader, what string, out io.Writer) (string, error) {
	dec := json.NewDecoder(r)
	id := ""
	for {
		var msg jsonmessage.JSONMessage
		err := dec.Decode(&msg)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("read %s output: %w", what, err)
		}
		if msg.Error != nil {
			return "", fmt.Errorf("engine: %w", msg.Error)
		}
		io.WriteString(out, msg.Stream)
		if strings.HasPrefix(msg.Status, "sha256:") {
			id = strings.TrimSpace(msg.Status)
		}
		if msg.Aux != nil {
			var aux struct{ ID string }
			if err := json.Unmarshal(*msg.Aux, &aux); err == nil && strings.HasPrefix(aux.ID, "sha256:") {
				id = aux.ID
			}
		}
	}
	if id == "" {
		return "", fmt.Errorf("engine reported no image ID for the %s", what)
	}
	return id, nil
}
