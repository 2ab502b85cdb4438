package main

import (
	"slices"
	"testing"
)

func TestParseSizes(t *testing.T) {
	got, err := parseSizes("300k, 1M,10M,100000000")
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{300_000, 1_000_000, 10_000_000, 100_000_000}; !slices.Equal(got, want) {
		t.Errorf("parseSizes = %v, want %v", got, want)
	}
	for _, bad := range []string{"", "1M,1M", "10M,1M", "0", "-1k", "1G", "1.5M"} {
		if _, err := parseSizes(bad); err == nil {
			t.Errorf("parseSizes(%q) took it", bad)
		}
	}
}
