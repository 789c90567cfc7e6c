package types

// The job templates of releases and runs. Slug releases run `gantryd
// slugrunner start` (mounted by the host agent, see
// keyspace.JobSpec.MountGantryd) on the stack image recorded in the
// release, as the stack's unprivileged user, with the slug fetched and
// cached by the agent and mounted read-only at SlugMountPath.
const (
	// WebPort is the container port of every process of type web (the
	// container gets PORT=8080); other process types listen on nothing.
	WebPort = 8080
	// GantrydPath is where a job with MountGantryd finds gantryd.
	GantrydPath = "/usr/local/bin/gantryd"
	// SlugMountPath is where the slug of a release is mounted in its
	// containers; slugrunner unpacks it into /app.
	SlugMountPath = "/tmp/gantry-in/slug.tgz"
	// AppUser is the unprivileged user of the stack and builder images
	// that builds and slug releases run as.
	AppUser = "app"
)
