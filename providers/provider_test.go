package providers

import (
	"testing"
	"time"
)

func TestExpiresBy(t *testing.T) {
	start := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	d := time.Hour
	for _, tc := range []struct {
		name           string
		reported, want time.Time
	}{
		{"clocks agree", start.Add(d), start.Add(d)},
		{"server shortened it", start.Add(20 * time.Minute), start.Add(20 * time.Minute)},
		{"server clock 3h behind", start.Add(d - 3*time.Hour), start.Add(d)},
		{"server clock 3h ahead", start.Add(d + 3*time.Hour), start.Add(d)},
		{"server clock 30m behind", start.Add(30 * time.Minute), start.Add(30 * time.Minute)},
		{"no expiry reported", time.Time{}, start.Add(d)},
	} {
		if got := ExpiresBy(start, d, tc.reported); !got.Equal(tc.want) {
			t.Errorf("%s: ExpiresBy = %v, want %v", tc.name, got, tc.want)
		}
	}
}
