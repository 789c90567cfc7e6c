package pgserver

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// runAsUsers are the accounts that run PostgreSQL when we are root, in order
// of preference.
var runAsUsers = []string{"postgres", "nobody"}

// credentialFor returns nil when we are not root. As root, it returns the
// credential of the account that runs initdb and postgres, after giving that
// account dir (chown -R) and a path to it (o+x on the parents).
func credentialFor(log *slog.Logger, dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	cred, name, err := lookupRunAs()
	if err != nil {
		return nil, err
	}
	log.Info("running as root: PostgreSQL runs as another user", "user", name, "uid", cred.Uid)
	if err := grantSearch(log, dir); err != nil {
		return nil, err
	}
	if err := chownTree(dir, int(cred.Uid), int(cred.Gid)); err != nil {
		return nil, err
	}
	return cred, nil
}

func lookupRunAs() (*syscall.Credential, string, error) {
	for _, name := range runAsUsers {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err := strconv.ParseUint(u.Uid, 10, 32)
		if err != nil {
			return nil, "", fmt.Errorf("pgserver: user %s has uid %q: %w", name, u.Uid, err)
		}
		gid, err := strconv.ParseUint(u.Gid, 10, 32)
		if err != nil {
			return nil, "", fmt.Errorf("pgserver: user %s has gid %q: %w", name, u.Gid, err)
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, name, nil
	}
	return nil, "", fmt.Errorf("pgserver: PostgreSQL cannot run as root and none of the users %v exists; "+
		"create one (apt-get install postgresql creates \"postgres\")", runAsUsers)
}

// grantSearch adds o+x to every parent directory of dir that lacks it, so
// that another user can reach dir. It never grants read permission.
func grantSearch(log *slog.Logger, dir string) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("pgserver: stat %s: %w", p, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			mode := fi.Mode() | 0o001
			if err := os.Chmod(p, mode); err != nil {
				return fmt.Errorf("pgserver: grant search permission on %s: %w", p, err)
			}
			log.Info("granted search permission (o+x) so PostgreSQL can reach its directory", "dir", p, "mode", mode.Perm().String())
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// chownTree gives dir and everything under it to uid:gid.
func chownTree(dir string, uid, gid int) error {
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		return fmt.Errorf("pgserver: chown %s: %w", dir, err)
	}
	return nil
}
