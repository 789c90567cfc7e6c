package cli

import (
	"fmt"
	"strings"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// parseAssignment splits a KEY=VALUE argument at its first '='. The value
// may be empty and may itself contain '='; the key must be a valid config
// var name. Errors name the offending argument.
func parseAssignment(arg string) (key, value string, err error) {
	key, value, found := strings.Cut(arg, "=")
	if !found {
		return "", "", fmt.Errorf("invalid argument %q: expected KEY=VALUE", arg)
	}
	if err := validateConfigKey(key); err != nil {
		return "", "", fmt.Errorf("invalid argument %q: %w", arg, err)
	}
	return key, value, nil
}

// validateConfigKey reports whether key is a valid config var name.
func validateConfigKey(key string) error {
	if key == "" {
		return fmt.Errorf("the name is empty")
	}
	if !types.ConfigVarNameRegexp.MatchString(key) {
		return fmt.Errorf("%q is not a valid config var name (letters, digits and '_', not starting with a digit)", key)
	}
	return nil
}
