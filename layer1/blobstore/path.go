package blobstore

import "fmt"

// MaxPathLen is the longest blob path, in bytes.
const MaxPathLen = 512

// ValidatePath checks a blob path: segments of the characters
// [A-Za-z0-9._-] separated by "/", with no empty segment (so no leading,
// trailing or doubled "/"), no "." segment, no ".." anywhere, and at most
// MaxPathLen bytes in all. Its errors wrap ErrInvalidPath.
func ValidatePath(path string) error {
	if path == "" {
		return fmt.Errorf("%w: the path is empty", ErrInvalidPath)
	}
	if len(path) > MaxPathLen {
		return fmt.Errorf("%w: the path is longer than %d bytes", ErrInvalidPath, MaxPathLen)
	}
	start := 0
	for i := 0; i <= len(path); i++ {
		if i < len(path) && path[i] != '/' {
			if !pathChar(path[i]) {
				return fmt.Errorf("%w %q: character %q at offset %d is not one of A-Z a-z 0-9 . _ - /",
					ErrInvalidPath, path, path[i], i)
			}
			if path[i] == '.' && i > 0 && path[i-1] == '.' {
				return fmt.Errorf("%w %q: \"..\" is not allowed", ErrInvalidPath, path)
			}
			continue
		}
		switch path[start:i] {
		case "":
			return fmt.Errorf("%w %q: empty segment at offset %d", ErrInvalidPath, path, start)
		case ".":
			return fmt.Errorf("%w %q: \".\" segment at offset %d", ErrInvalidPath, path, start)
		}
		start = i + 1
	}
	return nil
}

// validatePrefix checks a List prefix: "" or the characters of a path, at
// most MaxPathLen bytes.
func validatePrefix(prefix string) error {
	if len(prefix) > MaxPathLen {
		return fmt.Errorf("%w: the prefix is longer than %d bytes", ErrInvalidPath, MaxPathLen)
	}
	for i := 0; i < len(prefix); i++ {
		if c := prefix[i]; c != '/' && !pathChar(c) {
			return fmt.Errorf("%w: prefix %q: character %q at offset %d is not one of A-Z a-z 0-9 . _ - /",
				ErrInvalidPath, prefix, c, i)
		}
	}
	return nil
}

// pathChar reports whether c may appear in a path segment.
func pathChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}
