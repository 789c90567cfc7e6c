package up

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gantryhq/gantry/deploy/node"
)

// checkMode refuses to start a data dir in the other mode than the one it
// was made with. The two modes keep PostgreSQL differently (a private
// server of this process, or a container whose connection string is in
// node.DatabaseURLFile), and nothing moves one into the other: started in
// the wrong mode, the platform would come up empty next to its own data.
func checkMode(dataDir string, containers bool) error {
	exists := func(name string) (bool, error) {
		_, err := os.Stat(filepath.Join(dataDir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("data dir %s: %w", dataDir, err)
		}
		return true, nil
	}
	asContainers, err := exists(node.DatabaseURLFile)
	if err != nil {
		return err
	}
	inProcess, err := exists(node.PostgresDir)
	if err != nil {
		return err
	}
	inProcess = inProcess && !asContainers
	switch {
	case containers && inProcess:
		return fmt.Errorf("data dir %s holds a platform run in one process: start it with gantryd up --in-process --data %s, or give a new --data for the platform as containers", dataDir, dataDir)
	case !containers && asContainers:
		return fmt.Errorf("data dir %s holds a platform run as containers: start it without --in-process, or give a new --data", dataDir)
	}
	return nil
}
