package stack

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	dockerbuild "github.com/docker/docker/api/types/build"
)

// PostgresImage is the repository of the PostgreSQL image: the stack plus
// Debian's PostgreSQL server. It runs the platform's database and is the
// image of PostgreSQL add-ons.
const PostgresImage = "gantry/postgres"

// PostgresMajor is the major version of Debian's PostgreSQL in Suite.
const PostgresMajor = "15"

// LabelPostgresMajor holds PostgresMajor on the PostgreSQL image.
const LabelPostgresMajor = "gantry.postgres.major"

// PostgresUID is the uid (and gid) of the postgres user in the PostgreSQL
// image, fixed so that data directories keep their owner across images.
const PostgresUID = 999

// PostgresDataDir is the PostgreSQL data directory of the image, owned by
// the postgres user; containers mount their data there.
const PostgresDataDir = "/var/lib/postgresql/data"

// postgresBuildTimeout bounds the build of the PostgreSQL image: apt-get
// update and the download and install of about 40 MB of packages.
const postgresBuildTimeout = 15 * time.Minute

// postgresDockerfile makes the PostgreSQL image. The apt sources are a
// temporary file naming the mirror passed as the MIRROR build argument, so
// the packages come from the mirror the machine's own apt configuration
// names. postgresql-common goes first so that its configuration can stop
// the package from creating a cluster of its own.
const postgresDockerfile = `FROM {{base}}
ARG MIRROR
RUN set -eu; \
    groupadd --system --gid {{uid}} postgres; \
    useradd --system --uid {{uid}} --gid postgres --home-dir /var/lib/postgresql --no-create-home --shell /bin/bash postgres; \
    printf 'deb %s {{suite}} main\n' "$MIRROR" >/tmp/gantry-sources.list; \
    apt() { apt-get -o Dir::Etc::SourceList=/tmp/gantry-sources.list -o Dpkg::Use-Pty=false --yes --quiet --no-install-recommends "$@"; }; \
    apt update; \
    apt install postgresql-common; \
    sed -ri 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf; \
    grep -qx 'create_main_cluster = false' /etc/postgresql-common/createcluster.conf; \
    apt install postgresql-{{major}}; \
    rm -rf /tmp/gantry-sources.list /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /var/log/apt/* /var/log/*.log; \
    install -d -o postgres -g postgres -m 0700 {{data}}
ENV PATH=/usr/lib/postgresql/{{major}}/bin:{{path}}
STOPSIGNAL SIGINT
LABEL {{labels}}
`

// postgresContext returns the build context of the PostgreSQL image of
// version made from the stack image of version.
func postgresContext(version string) []contextFile {
	labels := dockerfileLabels(map[string]string{LabelVersion: version, LabelImage: "postgres", LabelPostgresMajor: PostgresMajor})
	r := strings.NewReplacer("{{base}}", StackRef(version), "{{uid}}", strconv.Itoa(PostgresUID), "{{suite}}", Suite,
		"{{major}}", PostgresMajor, "{{data}}", PostgresDataDir, "{{path}}", imagePath, "{{labels}}", labels)
	return []contextFile{{Name: "Dockerfile", Mode: 0o644, Data: []byte(r.Replace(postgresDockerfile))}}
}

// buildPostgres builds PostgresRef(version) from StackRef(version) with
// packages from mirror and returns a progress note. The build runs on the
// host's network, so the mirror is reached as the host reaches it, with the
// host's proxy settings.
func (b *build) buildPostgres(ctx context.Context, mirror string) (string, error) {
	ref := PostgresRef(b.cfg.Version)
	old, hadOld, err := inspect(ctx, b.cfg.Docker, ref)
	if err != nil {
		return "", err
	}
	args := map[string]*string{"MIRROR": &mirror}
	for _, k := range proxyVars {
		if v, ok := os.LookupEnv(k); ok {
			args[k] = &v
		}
	}
	id, err := imageBuild(ctx, b.cfg.Docker, b.log, postgresBuildTimeout, postgresContext(b.cfg.Version),
		dockerbuild.ImageBuildOptions{
			Tags:        []string{ref},
			BuildArgs:   args,
			NetworkMode: "host",
			NoCache:     b.cfg.Force,
		})
	if err != nil {
		return "", fmt.Errorf("build %s: %w", ref, err)
	}
	if hadOld && old.ID != id {
		b.log.Info("remove replaced image", "ref", ref, "id", old.ID)
		b.removeImage(ctx, old.ID)
	}
	return b.describe(ctx, id), nil
}
