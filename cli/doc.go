// Package cli implements gantry, the developer command line of Gantry.
//
// It follows Heroku and Flynn conventions: `gantry create` makes an app and
// adds a `gantry` git remote, `gantry env set K=V` changes config vars, the
// app comes from -a APP, then $GANTRY_APP, then the `gantry` git remote of
// the current work tree, and listing commands take --json. It talks to the
// controller only through its typed client, layer1/controller/client.
//
// The clusters the CLI knows live in a JSON file (see configPath);
// GANTRY_URL and GANTRY_TOKEN override the configured default cluster, and
// -c NAME picks another configured one.
//
// Run is the whole program; cmd/gantry only wires it to the process.
package cli
