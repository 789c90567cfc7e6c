// Package dashboard is the web dashboard the controller serves at /: plain
// HTML, CSS and JavaScript embedded in the binary (assets/), drawn in the
// browser from the controller's own API (docs/API.md).
//
// A user signs in with an API token (POST /session). The token never
// reaches a script again: the answer sets an HttpOnly, SameSite=Strict
// cookie (Secure over HTTPS) that holds a random session ID, and the
// sessions live in the controller's memory, each ending after an idle
// period and a maximum age, at sign-out (DELETE /session), or when its API
// token is removed. The controller accepts the cookie in place of
// "Authorization: Bearer" on /v1/ (see Dashboard.Authenticate); every
// request other than GET, HEAD and OPTIONS made with it must carry the
// session's CSRF token in the Gantry-CSRF-Token header, which the pages
// read from GET /session. Requests with an Authorization header never look
// at the cookie.
package dashboard
