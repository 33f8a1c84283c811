package config

import (
	"strings"
	"testing"
	"time"
)

func TestZZBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("- &a0 {objectName: x, secretPath: y}\n")
	for i := 1; i <= 6; i++ {
		b.WriteString("- &a" + string(rune('0'+i)) + " {<<: [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + string(rune('0'+i-1)))
		}
		b.WriteString("]}\n")
	}
	start := time.Now()
	_, err := parseObjects(b.String(), "", 0o644)
	t.Log(time.Since(start), err)
}
