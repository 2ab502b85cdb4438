package institution

import (
	"strings"
	"testing"
)

func TestBelgianEnterpriseNumberCheckDigits(t *testing.T) {
	for s, ok := range map[string]bool{
		"0123456749":  true,  // 1234567 mod 97 = 48, 97 − 48 = 49
		"0206733130":  true,  // the example's CAAMI
		"0206733179":  false, // the check digits the audit found wrong
		"0000000097":  true,  // 0 mod 97 = 0: the check digits are 97
		"012345674":   false,
		"01234567490": false,
		"12AB":        false,
		"012345674a":  false,
	} {
		if got := BelgianEnterpriseNumberOK(s); got != ok {
			t.Errorf("BelgianEnterpriseNumberOK(%q) = %v, want %v", s, got, ok)
		}
	}
}

func TestPartyIdentifiersAreCheckedNamingTheField(t *testing.T) {
	good := Party{VATID: "BE0206733130", CompanyID: "0206733130", EndpointID: "0206733130", EndpointScheme: "0208", Address: Address{Country: "BE"}}
	if err := good.Validate("tenants[0]"); err != nil {
		t.Fatalf("a good Belgian party: %v", err)
	}
	for name, tc := range map[string]struct {
		change func(p *Party)
		want   string
	}{
		"an endpoint of letters in scheme 0208": {func(p *Party) { p.EndpointID = "12AB" }, "tenants[0].endpoint_id:"},
		"an endpoint failing mod 97":            {func(p *Party) { p.EndpointID = "0206733179" }, "tenants[0].endpoint_id:"},
		"a scheme outside the EAS list":         {func(p *Party) { p.EndpointScheme = "XXXX" }, "tenants[0].endpoint_scheme:"},
		"an endpoint without a scheme":          {func(p *Party) { p.EndpointScheme = "" }, "tenants[0].endpoint_scheme:"},
		"a scheme without an endpoint":          {func(p *Party) { p.EndpointID = "" }, "tenants[0].endpoint_id:"},
		"a Belgian VAT number failing mod 97":   {func(p *Party) { p.VATID = "BE0206733179" }, "tenants[0].vat_id:"},
		"a Belgian VAT number of 9 digits":      {func(p *Party) { p.VATID = "BE020673313" }, "tenants[0].vat_id:"},
		"a VAT number without a country":        {func(p *Party) { p.VATID = "0206733130" }, "tenants[0].vat_id:"},
		"a Belgian company id failing mod 97":   {func(p *Party) { p.CompanyID = "0206733179" }, "tenants[0].company_id:"},
	} {
		t.Run(name, func(t *testing.T) {
			p := good
			tc.change(&p)
			if err := p.Validate("tenants[0]"); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want an error naming %s", err, tc.want)
			}
		})
	}
	// Another scheme's numbers are that scheme's business: only its code is checked.
	gln := Party{EndpointID: "5790000435951", EndpointScheme: "0088"}
	if err := gln.Validate("tenants[1]"); err != nil {
		t.Errorf("a GLN endpoint: %v", err)
	}
}
