package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/gantryhq/gantry/layer1/controller/types"
	urfave "github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"
)

// maxKeyFileSize bounds a public key file read, in bytes.
const maxKeyFileSize = 64 << 10

func (r *runner) keyCommand() *urfave.Command {
	return &urfave.Command{
		Name:    "key",
		Aliases: []string{"keys"},
		Usage:   "manage the SSH keys allowed to git push",
		Flags:   []urfave.Flag{clusterFlag(), jsonFlag()},
		Action:  r.keyList,
		Subcommands: []*urfave.Command{
			{
				Name:      "add",
				Usage:     "register a public key (default ~/.ssh/id_ed25519.pub, then ~/.ssh/id_rsa.pub)",
				ArgsUsage: "[FILE]",
				Flags:     []urfave.Flag{clusterFlag()},
				Action:    r.keyAdd,
			},
			{
				Name:   "list",
				Usage:  "list registered keys",
				Flags:  []urfave.Flag{clusterFlag(), jsonFlag()},
				Action: r.keyList,
			},
			{
				Name:      "remove",
				Usage:     "remove a key by fingerprint",
				ArgsUsage: "FINGERPRINT",
				Flags:     []urfave.Flag{clusterFlag()},
				Action:    r.keyRemove,
			},
		},
	}
}

func (r *runner) keyAdd(c *urfave.Context) error {
	if err := checkArgs(c, 0, 1); err != nil {
		return err
	}
	path, err := r.publicKeyPath(c.Args().First())
	if err != nil {
		return err
	}
	line, err := readPublicKey(path)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	key, err := cl.AddKey(c.Context, line)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.stdout, "Added key %s", key.Fingerprint)
	if key.Comment != "" {
		fmt.Fprintf(r.stdout, " (%s)", key.Comment)
	}
	fmt.Fprintln(r.stdout)
	r.pinHostKey(c.Context, cl)
	return nil
}

// publicKeyPath returns file, or the first of ~/.ssh/id_ed25519.pub and
// ~/.ssh/id_rsa.pub that exists.
func (r *runner) publicKeyPath(file string) (string, error) {
	if file != "" {
		return file, nil
	}
	home := r.getenv("HOME")
	if home == "" {
		return "", errors.New("HOME is not set: name the public key file (gantry key add FILE)")
	}
	candidates := []string{
		filepath.Join(home, ".ssh", "id_ed25519.pub"),
		filepath.Join(home, ".ssh", "id_rsa.pub"),
	}
	for _, p := range candidates {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no public key at %s or %s: name one (gantry key add FILE)", candidates[0], candidates[1])
}

// readPublicKey reads the first public key of an authorized_keys-format
// file and returns it as one normalised line ("ssh-ed25519 AAAA... comment").
func readPublicKey(path string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("no such file %s", path)
	}
	if err != nil {
		return "", fmt.Errorf("read key: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return "", fmt.Errorf("read key %s: %w", path, err)
	}
	if len(b) > maxKeyFileSize {
		return "", fmt.Errorf("%s is larger than %d bytes: not a public key", path, maxKeyFileSize)
	}
	if bytes.Contains(b, []byte("PRIVATE KEY")) {
		return "", fmt.Errorf("%s is a private key: pass the public key (%s.pub)", path, strings.TrimSuffix(path, ".pub"))
	}
	pub, comment, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return "", fmt.Errorf("%s does not hold an SSH public key in authorized_keys format", path)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	if comment != "" {
		line += " " + comment
	}
	return line, nil
}

func (r *runner) keyList(c *urfave.Context) error {
	if err := checkArgs(c, 0, 0); err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	keys, err := cl.ListKeys(c.Context)
	if err != nil {
		return err
	}
	if keys == nil {
		keys = []types.Key{}
	}
	if c.Bool("json") {
		return writeJSON(r.stdout, keys)
	}
	if len(keys) == 0 {
		fmt.Fprintln(r.stdout, "No keys yet. Add one with: gantry key add [FILE]")
		return nil
	}
	tw := newTable(r.stdout)
	fmt.Fprintln(tw, "FINGERPRINT\tTYPE\tCOMMENT\tADDED")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.Fingerprint, k.Type, orDash(k.Comment), formatTime(k.CreatedAt))
	}
	return tw.Flush()
}

func (r *runner) keyRemove(c *urfave.Context) error {
	if err := checkArgs(c, 1, 1); err != nil {
		return err
	}
	fp := c.Args().First()
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	if err := cl.RemoveKey(c.Context, fp); err != nil {
		return err
	}
	fmt.Fprintf(r.stdout, "Removed key %s\n", fp)
	return nil
}
