package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// tokenPrefix opens every join token, so that one is recognised when
// pasted in the wrong place.
const tokenPrefix = "gantryjoin1."

// DefaultTokenTTL is how long a join token is valid unless told.
const DefaultTokenTTL = time.Hour

// MaxTokenTTL bounds a join token's lifetime.
const MaxTokenTTL = 7 * 24 * time.Hour

// expiredKept is how long an expired token's record stays in etcd, so
// that a host that comes with it is told it expired, not that it is
// unknown.
const expiredKept = 24 * time.Hour

// etcdTimeout bounds one etcd request of this package.
const etcdTimeout = 10 * time.Second

// tokenRE is the syntax of a join token: the prefix, the secret (32 hex
// digits) and the SHA-256 fingerprint of the cluster CA (64).
var tokenRE = regexp.MustCompile(`^` + regexp.QuoteMeta(tokenPrefix) + `([0-9a-f]{32})\.([0-9a-f]{64})$`)

// Token is a join token: a secret that lets a host join, and the
// fingerprint of the cluster CA, which the host pins before it sends the
// secret.
type Token struct {
	Secret        string
	CAFingerprint string
}

// String is the token as `gantryd join --token` takes it.
func (t Token) String() string { return tokenPrefix + t.Secret + "." + t.CAFingerprint }

// ParseToken reads a join token.
func ParseToken(s string) (Token, error) {
	m := tokenRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return Token{}, fmt.Errorf("the join token is malformed: want %s<32 hex digits>.<64 hex digits>, as gantryd join-token prints it", tokenPrefix)
	}
	return Token{Secret: m[1], CAFingerprint: m[2]}, nil
}

// tokenRecord is the value of a join token's key.
type tokenRecord struct {
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// CreateToken makes a join token valid for ttl and stores its secret's
// hash in etcd under a lease (kept expiredKept past the end, to say
// "expired" to a host that comes late). fingerprint is the cluster CA's.
func CreateToken(ctx context.Context, etcd *clientv3.Client, space keyspace.Space, fingerprint string, ttl time.Duration) (Token, time.Time, error) {
	if ttl <= 0 || ttl > MaxTokenTTL {
		return Token{}, time.Time{}, fmt.Errorf("a join token lives more than 0 and at most %s, not %s", MaxTokenTTL, ttl)
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return Token{}, time.Time{}, fmt.Errorf("join token: %w", err)
	}
	t := Token{Secret: hex.EncodeToString(b), CAFingerprint: fingerprint}
	now := time.Now().UTC()
	rec := tokenRecord{CreatedAt: now, ExpiresAt: now.Add(ttl)}
	val, err := json.Marshal(rec)
	if err != nil {
		return Token{}, time.Time{}, fmt.Errorf("join token: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	lease, err := etcd.Grant(ctx, int64((ttl+expiredKept)/time.Second))
	if err != nil {
		return Token{}, time.Time{}, fmt.Errorf("store the join token in etcd: %w", err)
	}
	if _, err := etcd.Put(ctx, space.JoinToken(secretSum(t.Secret)), string(val), clientv3.WithLease(lease.ID)); err != nil {
		return Token{}, time.Time{}, fmt.Errorf("store the join token in etcd: %w", err)
	}
	return t, rec.ExpiresAt, nil
}

// CheckToken accepts the secret of a join token that exists and has not
// expired; otherwise it returns a 403 that says which.
func CheckToken(ctx context.Context, etcd *clientv3.Client, space keyspace.Space, secret string, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	resp, err := etcd.Get(ctx, space.JoinToken(secretSum(secret)))
	if err != nil {
		return types.ErrUnavailable.WithMessage("cannot read the join tokens from etcd: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return refused("the join token is not one of this cluster's: make one with gantryd join-token on a host of the cluster")
	}
	var rec tokenRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return refused("the join token's record is unreadable: make a new one with gantryd join-token")
	}
	if !now.Before(rec.ExpiresAt) {
		return refused("the join token expired at %s: make a new one with gantryd join-token", rec.ExpiresAt.Format(time.RFC3339))
	}
	return nil
}

func refused(format string, args ...any) error {
	return &types.Error{Status: http.StatusForbidden, Code: "join_refused", Message: fmt.Sprintf(format, args...)}
}

func secretSum(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}
