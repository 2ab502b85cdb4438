package institution

import (
	"fmt"
	"strconv"
	"strings"
)

// Party is a seller's or buyer's identity as e-invoices carry it.
type Party struct {
	// LegalName defaults to the customer's Name or the seller's name.
	LegalName string `json:"legal_name,omitempty" yaml:"legal_name"`
	// VATID is the VAT number with its country prefix (BE0123456789).
	VATID string `json:"vat_id,omitempty" yaml:"vat_id"`
	// CompanyID is the legal registration number (the Belgian enterprise number).
	CompanyID string `json:"company_id,omitempty" yaml:"company_id"`
	// EndpointID and EndpointScheme address the party on the Peppol network,
	// e.g. 0123456789 in scheme 0208 (Belgian enterprise number).
	EndpointID     string  `json:"endpoint_id,omitempty" yaml:"endpoint_id"`
	EndpointScheme string  `json:"endpoint_scheme,omitempty" yaml:"endpoint_scheme"`
	Address        Address `json:"address" yaml:"address"`
	Email          string  `json:"email,omitempty" yaml:"email"`
}

// Address is a postal address; Country is an ISO 3166-1 alpha-2 code.
type Address struct {
	Street     string `json:"street,omitempty" yaml:"street"`
	City       string `json:"city,omitempty" yaml:"city"`
	PostalCode string `json:"postal_code,omitempty" yaml:"postal_code"`
	Country    string `json:"country,omitempty" yaml:"country"`
}

// easCodes is the Peppol electronic address scheme (EAS) code list that
// Peppol BIS Billing 3.0 accepts for an endpoint (rule PEPPOL-EN16931-CL008,
// rules release 2026.5): an access point rejects any other scheme.
var easCodes = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range strings.Fields("0002 0007 0009 0060 0088 0096 0097 0106 0130 0135 0142 0151 0183 0184 0188 0190 0191 0192 0195 0196 0198 0199 0200 0201 0204 0208 0209 0210 0211 0216 0218 0221 0225 0230 0235 0240 0242 0244 0245 0246 0248 9910 9913 9914 9915 9918 9919 9920 9922 9923 9924 9925 9926 9927 9928 9929 9930 9931 9932 9933 9934 9935 9936 9937 9938 9939 9940 9941 9942 9943 9944 9945 9946 9947 9948 9949 9950 9951 9952 9953 9957 9959") {
		m[c] = true
	}
	return m
}()

// SchemeBelgianEnterprise is the EAS code of the Belgian enterprise number
// (KBO/BCE), how Belgian public institutions are addressed on Peppol.
const SchemeBelgianEnterprise = "0208"

// BelgianEnterpriseNumberOK reports whether s is a Belgian enterprise
// number: 10 digits, the last two 97 − (the first eight mod 97), as Peppol's
// PEPPOL-COMMON-R043 checks for scheme 0208.
func BelgianEnterpriseNumberOK(s string) bool {
	if len(s) != 10 || strings.Trim(s, "0123456789") != "" {
		return false
	}
	base, _ := strconv.Atoi(s[:8])
	check, _ := strconv.Atoi(s[8:])
	return check == 97-base%97
}

// Validate reports what is wrong with p's identifiers, naming each field
// under prefix (e.g. "tenants[0]"): an endpoint scheme outside the EAS code
// list, an endpoint in scheme 0208 that is not a Belgian enterprise number,
// a Belgian VAT number that is not BE and one, and a Belgian party's
// company_id that is not one. A Peppol access point would reject the
// e-invoice: it is refused before any document exists.
func (p Party) Validate(prefix string) error {
	var errs []string
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Sprintf("%s.%s: ", prefix, field)+fmt.Sprintf(format, args...))
	}
	switch {
	case p.EndpointScheme == "" && p.EndpointID != "":
		bad("endpoint_scheme", "is required with endpoint_id %q (e.g. %s for a Belgian enterprise number)", p.EndpointID, SchemeBelgianEnterprise)
	case p.EndpointScheme != "" && !easCodes[p.EndpointScheme]:
		bad("endpoint_scheme", "%q is not in the Peppol electronic address scheme (EAS) code list (e.g. %s, the Belgian enterprise number)", p.EndpointScheme, SchemeBelgianEnterprise)
	case p.EndpointScheme != "" && p.EndpointID == "":
		bad("endpoint_id", "is required with endpoint_scheme %s", p.EndpointScheme)
	case p.EndpointScheme == SchemeBelgianEnterprise && !BelgianEnterpriseNumberOK(p.EndpointID):
		bad("endpoint_id", "%q is not a Belgian enterprise number (scheme %s: 10 digits, the last two 97 minus the first eight mod 97)", p.EndpointID, SchemeBelgianEnterprise)
	}
	if p.VATID != "" {
		if len(p.VATID) < 4 || strings.Trim(p.VATID[:2], "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
			bad("vat_id", "%q must start with its two-letter country prefix (BE0123456749)", p.VATID)
		} else if strings.HasPrefix(p.VATID, "BE") && !BelgianEnterpriseNumberOK(p.VATID[2:]) {
			bad("vat_id", "%q is not a Belgian VAT number: BE and a 10-digit enterprise number whose last two digits are 97 minus the first eight mod 97", p.VATID)
		}
	}
	if p.CompanyID != "" && p.Address.Country == "BE" && !BelgianEnterpriseNumberOK(p.CompanyID) {
		bad("company_id", "%q is not a Belgian enterprise number (10 digits, the last two 97 minus the first eight mod 97)", p.CompanyID)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}
