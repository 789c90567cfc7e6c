// Package slugbuilder turns an app's source into a slug with buildpacks.
//
// `gantryd slugbuilder` runs it as a one-off job in a container of the
// builder image, as the image's unprivileged user, configured by
// environment variables (ConfigFromEnv). The container cannot reach the
// controller: the host agent mounts the inputs as read-only files and
// copies the outputs out of the container after it exits with status 0.
// The build output streams to stdout, and from there to the developer's
// `git push`. [Build] does the work:
//
//	SOURCE    /tmp/gantry-in/source.tgz --slugrunner.Unpack (os.Root)--> BUILD_DIR (/app)
//	CACHE_IN  /tmp/gantry-in/cache.tgz (missing: none) --Unpack--> CACHE_DIR
//	CONFIG_VAR_<NAME>=value ------------------------------------> ENV_DIR/<NAME>
//	        |
//	buildpacks: BUILDPACK_URL, else .buildpacks, else detection
//	  (go, static, python, procfile)
//	        |  bin/detect BUILD_DIR
//	        |  bin/compile BUILD_DIR CACHE_DIR ENV_DIR   (output streamed)
//	        |  bin/release BUILD_DIR -> default_process_types
//	        |
//	Procfile (slugrunner.ParseProcfile) over the default process types
//	.slugignore applied to BUILD_DIR
//	        |
//	tar.gz of BUILD_DIR, sha256, size limit --> SLUG_OUT   /tmp/gantry-out/slug.tgz
//	tar.gz of CACHE_DIR (when it changed) ----> CACHE_OUT  /tmp/gantry-out/cache.tgz
//	Result JSON (digest, size, types) --------> RESULT_OUT /tmp/gantry-out/result.json
//
// The built-in buildpacks are implemented in Go behind the same contract
// (detect, compile, release), so they need nothing from the builder image
// but the tools they drive (the Go toolchain is fetched; python3 is the
// stack's). Custom buildpacks are git repositories cloned over https whose
// bin/detect, bin/compile and bin/release scripts run as programs. The
// README next to this file documents the job contract, the buildpacks and
// the output format.
package slugbuilder
