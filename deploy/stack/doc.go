// Package stack builds Gantry's base images locally, with no registry:
//
//   - gantry/stack:<version> runs apps: Debian bookworm (debootstrap, minbase)
//     from the apt mirror the machine's own apt configuration names, the
//     host's CA certificates, a few common runtime libraries and python3,
//     user app (uid 1000), WorkingDir /app, LANG=C.UTF-8.
//   - gantry/builder:<version> runs builds: the same root file system plus
//     build-essential, git, curl, pkg-config and python3-venv.
//
// The build, run by [Build]:
//
//	/etc/apt/sources.list{,.d/*}    the mirror (first deb entry of the main archive)
//	        |
//	debootstrap --variant=minbase --include=<runtime packages>   .debs cached in CacheDir
//	        |
//	configure: user app, host CAs, dpkg path excludes (man, docs, locales)
//	        |
//	tar | ImageImport  -> stack image (untagged)
//	        |
//	chroot apt-get install <build tools>                         .debs cached in CacheDir
//	        |
//	tar | ImageImport  -> builder image (untagged)
//	        |
//	tag both, remove the images the tags pointed to before
//
// Commands inside the root file system run through chroot in a private mount
// namespace with their own /proc, /dev and /dev/pts, so nothing they mount
// outlives them. Tags are applied only once both images are imported: a
// failed build leaves the previous images in place.
package stack
