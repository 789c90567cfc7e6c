// Package acme obtains TLS certificates from an ACME server (RFC 8555), such
// as Let's Encrypt, for the custom domains of the apps.
//
// An Issuer runs one order per domain with the HTTP-01 challenge: it puts
// the key authorization of each challenge token into etcd
// (keyspace.Space.ACMEChallenge), where every router of the cluster reads
// it and answers /.well-known/acme-challenge/<token> on its HTTP listener,
// so validation succeeds whichever router the ACME server reaches.
//
//	controller ──order──▶ ACME server ──GET /.well-known/acme-challenge/T──▶ any router
//	    │                                                                      ▲
//	    └──────── put acme/challenges/T (key authorization, leased) ──▶ etcd ──┘
//
// Failures are classified by Problem and RetryAt, which the controller
// stores and shows in `gantry route list`. The controller seals the keys
// it obtains with layer0/sealed.
package acme
