// Package types holds the wire types of the controller API v1 (see
// docs/API.md), its error codes, and the validation rules of the values that
// cross it (app names, config vars). The server, the typed client and the
// CLI share them.
package types
