// Package cluster is how a host joins a Gantry cluster: the join tokens
// that `gantryd join-token` prints (CreateToken, CheckToken), what a
// joining host gets from the cluster (Bundle, served by the controller's
// JoinFunc, Handler), and the request of `gantryd join` (Join), over TLS
// pinned to the cluster CA of the token. The etcd membership of the hosts
// is layer0/etcdmember's. See docs/ARCHITECTURE.md, "Several hosts".
package cluster
