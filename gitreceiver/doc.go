// Package gitreceiver is Gantry's git server: an SSH server (gliderlabs/ssh)
// that accepts `git push` to an app's repository from registered keys, builds
// the pushed commit before the ref is accepted, and serves `git clone` and
// `git fetch` of the app's repository.
//
//	git push ──ssh──▶ Server ──▶ git receive-pack (bare repo per app)
//	                    ▲               │ proc-receive hook
//	                    │ output, exit  ▼
//	                    └──── hook socket ◀── gantryd gitreceiver hook
//	                            │
//	                            ▼ Builder: archive → build → release → deploy
//
// The machine's git does the pack protocol (every client feature works);
// go-git creates and inspects the bare repositories. git runs with
// receive.procReceiveRefs=refs, so every ref update goes to the proc-receive
// hook instead of being applied by git. The hook is a thin relay: it hands
// the ref updates to the server over a unix socket, prints what the server
// streams back (git shows it as "remote: ..."), and reports the ref
// accepted or rejected with a reason: a failed build shows as
// "! [remote rejected] main -> main (build failed)" and the running release
// is left alone.
//
// Per app, a push is one step under the repository's push lock (an flock):
// the branch is checked against the value the client saw, the commit is
// built and deployed, and the server moves the branch. A push either does
// all of it or none ("changed by another push" when another push moved the
// branch first). The SSH server caps and times out connections that do
// not authenticate, and each repository records its app's ID, so that a
// destroyed app's repository is removed and never served to a new app of
// the same name.
package gitreceiver
