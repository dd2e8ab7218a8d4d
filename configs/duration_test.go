package configs

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestDurationUnmarshal(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "20m", want: 20 * time.Minute},
		{in: "1h30m", want: 90 * time.Minute},
		{in: `"45s"`, want: 45 * time.Second},
		{in: "0s", want: 0},
		{in: "15", wantErr: `line 1: "15" is not a duration; write a number with a unit`},
		{in: "soon", wantErr: `"soon" is not a duration`},
		{in: "[1m]", wantErr: "expected a duration, got a list"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var v struct {
				D Duration `yaml:"d"`
			}
			err := yaml.Unmarshal([]byte("d: "+tt.in), &v)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || v.D.D() != tt.want {
				t.Fatalf("got %v, %v; want %v", v.D.D(), err, tt.want)
			}
		})
	}
}

func TestDurationMarshalRoundTrip(t *testing.T) {
	tests := map[time.Duration]string{
		time.Hour:                  "1h",
		90 * time.Minute:           "1h30m",
		15 * time.Minute:           "15m",
		5 * time.Second:            "5s",
		time.Hour + time.Second:    "1h0m1s",
		1500 * time.Millisecond:    "1.5s",
		0:                          "0s",
		-2*time.Hour - time.Minute: "-2h1m",
	}
	for d, want := range tests {
		out, err := yaml.Marshal(map[string]Duration{"d": Duration(d)})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != "d: "+want {
			t.Errorf("Marshal(%v) = %q, want %q", d, got, "d: "+want)
		}
		var back map[string]Duration
		if err := yaml.Unmarshal(out, &back); err != nil || back["d"].D() != d {
			t.Errorf("round trip of %v = %v, %v", d, back["d"], err)
		}
	}
}
