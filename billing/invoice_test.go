package billing

import (
	"fmt"
	"testing"

	"github.com/shopspring/decimal"
)

// TestPricesKeepTheirDigitsInText: the text output of `invoice show` and
// `draft` prints prices with fmt, and must show what the PDF, CSV and JSON
// show.
func TestPricesKeepTheirDigitsInText(t *testing.T) {
	for in, want := range map[string]string{"0.9500": "0.9500", "0.00": "0.00", "-50.00": "-50.00", "0.00020": "0.00020"} {
		p := Price{decimal.RequireFromString(in)}
		if got := fmt.Sprintf("%s|%v", p, p); got != want+"|"+want {
			t.Errorf("price %s prints as %q, want %s each time", in, got, want)
		}
	}
}
