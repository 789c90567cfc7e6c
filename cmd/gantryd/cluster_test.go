package main

import (
	"slices"
	"testing"
)

func TestJoinArgs(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"gantryd", "join", "10.0.0.1:7070", "--token", "T", "--data", "d"}, []string{"gantryd", "join", "--token", "T", "--data", "d", "10.0.0.1:7070"}},
		{[]string{"gantryd", "--log-level=debug", "join", "a:1", "--token", "T"}, []string{"gantryd", "--log-level=debug", "join", "--token", "T", "a:1"}},
		{[]string{"gantryd", "join", "--token", "T", "a:1"}, []string{"gantryd", "join", "--token", "T", "a:1"}},
		{[]string{"gantryd", "up", "--data", "join"}, []string{"gantryd", "up", "--data", "join"}},
		{[]string{"gantryd", "join"}, []string{"gantryd", "join"}},
	} {
		if got := joinArgs(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("joinArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
