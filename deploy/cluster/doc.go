// Package cluster is how hosts make one Gantry cluster: the join tokens
// that `gantryd join-token` prints, what a joining host gets from the
// cluster (Bundle), and the etcd membership of the first hosts (a member
// added by runtime reconfiguration, as a learner, then promoted). See
// docs/ARCHITECTURE.md, "Several hosts".
package cluster
