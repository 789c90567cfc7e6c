package types

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// Limits of the values the API accepts.
const (
	// MaxAppName is the longest app name, in bytes.
	MaxAppName = 30
	// MaxConfigValue is the largest config var value, in bytes.
	MaxConfigValue = 32 << 10
	// MaxConfigName is the longest config var name, in bytes.
	MaxConfigName = 256
	// MaxConfigTotal bounds an app's whole config: the sum of the lengths
	// of its names and values, in bytes (Heroku's limit).
	MaxConfigTotal = 64 << 10
	// MaxKeyComment is the longest SSH key comment, in bytes.
	MaxKeyComment = 256
	// MaxProcessTypes is the most process types a release may have.
	MaxProcessTypes = 100
	// MaxProcessCommand is the longest command of a process type, in
	// bytes.
	MaxProcessCommand = 32 << 10
	// MaxProcfile bounds the process types of a release together: the sum
	// of the lengths of their names and commands, in bytes (a Procfile of
	// that size).
	MaxProcfile = 64 << 10
	// MaxCertChain is the largest PEM certificate chain of a route, in
	// bytes; MaxCertChainLen is the most certificates it may hold.
	MaxCertChain    = 64 << 10
	MaxCertChainLen = 10
	// MaxDomain is the longest route domain, in bytes.
	MaxDomain = 253
	// maxLabel is the longest label of a domain, in bytes.
	maxLabel = 63
)

var (
	// AppNameRegexp matches every valid app name.
	AppNameRegexp = regexp.MustCompile(`^[a-z][a-z0-9-]{1,29}$`)
	// ConfigVarNameRegexp matches every valid config var name.
	ConfigVarNameRegexp = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// ProcessTypeRegexp matches every valid process type ("web", "worker").
	ProcessTypeRegexp = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,29}$`)
)

// SystemAppPrefix begins the names of the platform's own apps
// (gantry-controller, gantry-router, ...). Users cannot create or destroy
// apps with it.
const SystemAppPrefix = "gantry-"

// SystemAppController is the system app that runs the controller. Its log
// also gets the controller's warnings about the platform, such as a host's
// disk passing the warning threshold.
const SystemAppController = SystemAppPrefix + "controller"

// IsSystemAppName reports whether name is reserved for the platform's own
// apps.
func IsSystemAppName(name string) bool { return strings.HasPrefix(name, SystemAppPrefix) }

// ValidateAppName returns nil when name is a valid app name: it matches
// AppNameRegexp and, being a DNS label in the app's domain, does not end
// with a dash. Otherwise it returns an ErrInvalid that says what is wrong.
func ValidateAppName(name string) error {
	invalid := func(why string) error {
		return ErrInvalid.WithMessage("invalid app name %q: %s (2 to 30 lowercase letters, digits and dashes, "+
			"starting with a letter, not ending with a dash)", name, why)
	}
	switch {
	case len(name) < 2:
		return invalid("too short")
	case len(name) > MaxAppName:
		return invalid("too long")
	case name[0] < 'a' || name[0] > 'z':
		return invalid("it must start with a lowercase letter")
	case strings.HasSuffix(name, "-"):
		return invalid("it must not end with a dash")
	case !AppNameRegexp.MatchString(name):
		return invalid("it may contain only lowercase letters, digits and dashes")
	}
	return nil
}

// ValidateConfigVar returns nil when name and value make a valid config var,
// else an ErrInvalid that names the var and says what is wrong.
func ValidateConfigVar(name, value string) error {
	switch {
	case len(name) > MaxConfigName:
		return ErrInvalid.WithMessage("config var name %.40q...: the name is %d bytes, the limit is %d", name, len(name), MaxConfigName)
	case !ConfigVarNameRegexp.MatchString(name):
		return ErrInvalid.WithMessage("invalid config var name %q: use letters, digits and underscores, not starting with a digit", name)
	case len(value) > MaxConfigValue:
		return ErrInvalid.WithMessage("config var %s: value is %d bytes, the limit is %d", name, len(value), MaxConfigValue)
	case strings.ContainsRune(value, 0):
		return ErrInvalid.WithMessage("config var %s: value contains a NUL byte", name)
	case !utf8.ValidString(value):
		return ErrInvalid.WithMessage("config var %s: value is not valid UTF-8", name)
	}
	return nil
}

// ConfigSize is the size of a config that MaxConfigTotal bounds: the sum
// of the lengths of its names and values, in bytes.
func ConfigSize(config map[string]string) int {
	n := 0
	for k, v := range config {
		n += len(k) + len(v)
	}
	return n
}

// ValidateConfigChange returns nil when a change of an app's config from
// before to after keeps it within MaxConfigTotal, else an ErrInvalid that
// says so. A change that makes the config smaller is always allowed, so
// that a config over the limit (made before the limit existed) can be cut
// down.
func ValidateConfigChange(before, after map[string]string) error {
	size := ConfigSize(after)
	if size <= MaxConfigTotal || size < ConfigSize(before) {
		return nil
	}
	return ErrInvalid.WithMessage("the config would hold %d bytes of names and values, the limit is %d (64 KiB); unset vars or keep large data elsewhere",
		size, MaxConfigTotal)
}

// ValidateProcessType returns nil when name is a valid process type, else
// an ErrInvalid that names it.
func ValidateProcessType(name string) error {
	if !ProcessTypeRegexp.MatchString(name) {
		return ErrInvalid.WithMessage("invalid process type %q: use 1 to 30 lowercase letters, digits, dashes and underscores, starting with a letter", name)
	}
	return nil
}

// ValidateDomain returns nil when domain can be routed: a lower-case host
// name (dot-separated labels of 1 to 63 letters, digits and dashes, not
// starting or ending with a dash; 253 bytes at most, no trailing dot), or
// "*." and such a name for a wildcard route, which matches exactly one more
// label. Otherwise it returns an ErrInvalid that says what is wrong.
func ValidateDomain(domain string) error {
	invalid := func(why string) error {
		return ErrInvalid.WithMessage("invalid domain %q: %s", domain, why)
	}
	name := strings.TrimPrefix(domain, "*.")
	switch {
	case domain == "":
		return invalid("it is empty")
	case len(domain) > MaxDomain:
		return invalid(fmt.Sprintf("it is longer than %d bytes", MaxDomain))
	case name == "":
		return invalid("a wildcard needs a domain after \"*.\"")
	case strings.HasSuffix(name, "."):
		return invalid("remove the trailing dot")
	}
	for label := range strings.SplitSeq(name, ".") {
		switch {
		case label == "":
			return invalid("it has an empty label")
		case label == "*":
			return invalid("a wildcard is allowed only as the first label, as in *.example.test")
		case len(label) > maxLabel:
			return invalid(fmt.Sprintf("label %q is longer than %d bytes", label, maxLabel))
		case label[0] == '-' || label[len(label)-1] == '-':
			return invalid(fmt.Sprintf("label %q starts or ends with a dash", label))
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return invalid("use lower-case letters, digits, dashes and dots")
			}
		}
	}
	return nil
}

// ValidateRouteDomain returns nil when a new custom route may have domain:
// a valid domain (see ValidateDomain) that is not an IP address (its last
// label is not a number: no top-level domain is), that has at least two
// labels below a wildcard ("*.example.com", not "*.test", which would
// take a whole top-level domain), and that is neither platformDomain nor
// a name under it, which are the apps' default domains. Otherwise it
// returns an ErrInvalid that says what is wrong.
func ValidateRouteDomain(domain, platformDomain string) error {
	if err := ValidateDomain(domain); err != nil {
		return err
	}
	invalid := func(format string, args ...any) error {
		return ErrInvalid.WithMessage("invalid domain %q: "+format, append([]any{domain}, args...)...)
	}
	name, wildcard := strings.CutPrefix(domain, "*.")
	labels := strings.Split(name, ".")
	last := labels[len(labels)-1]
	switch {
	case strings.Trim(last, "0123456789") == "":
		return invalid("an IP address is not a host name; routes are for domain names")
	case name == platformDomain || strings.HasSuffix(name, "."+platformDomain):
		return invalid("%s and the names under it are reserved for the apps' default domains (<app>.%s)", platformDomain, platformDomain)
	case wildcard && len(labels) < 2:
		return invalid("a wildcard needs at least two labels below the *, as in *.example.com")
	}
	return nil
}

// ValidateProcesses returns nil when a release's process types, by name
// with their commands, are within the limits: at most MaxProcessTypes
// types, valid names (see ValidateProcessType), commands of at most
// MaxProcessCommand bytes of UTF-8 text without NUL, and MaxProcfile bytes
// in all. Otherwise it returns an ErrInvalid that names the problem. It
// does not check that a command splits into arguments, which only image
// releases need.
func ValidateProcesses(commands map[string]string) error {
	if n := len(commands); n > MaxProcessTypes {
		return ErrInvalid.WithMessage("%d process types, the limit is %d", n, MaxProcessTypes)
	}
	total := 0
	for _, typ := range slices.Sorted(maps.Keys(commands)) {
		if err := ValidateProcessType(typ); err != nil {
			return err
		}
		cmd := commands[typ]
		switch {
		case len(cmd) > MaxProcessCommand:
			return ErrInvalid.WithMessage("process %s: the command is %d bytes, the limit is %d", typ, len(cmd), MaxProcessCommand)
		case strings.ContainsRune(cmd, 0) || !utf8.ValidString(cmd):
			return ErrInvalid.WithMessage("process %s: the command holds a NUL byte or invalid UTF-8", typ)
		}
		total += len(typ) + len(cmd)
	}
	if total > MaxProcfile {
		return ErrInvalid.WithMessage("the process types and their commands are %d bytes, the limit is %d (64 KiB)", total, MaxProcfile)
	}
	return nil
}
