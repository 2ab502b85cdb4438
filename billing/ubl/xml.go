package ubl

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
)

// The UBL 2.1 namespaces.
const (
	nsInvoice    = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
	nsCreditNote = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
	nsCAC        = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
	nsCBC        = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
)

// document is a UBL Invoice or CreditNote, as far as Peppol BIS Billing 3.0
// and this package need. The same type is written by Render and read by
// Check, so what Check reads is exactly what Render wrote. Field order is
// the schema's element order, which the schema enforces; the fields that
// only one of the two documents has are omitted when empty. A few fields
// (OrderReference, TaxRepresentative, line allowances and charges) are
// never written: Check reads them because the rules it checks count them.
//
// encoding/xml writes the cac: and cbc: prefixes verbatim from the tags;
// decode maps whatever prefixes a document uses onto them. Optional
// aggregates are pointers: encoding/xml writes the parents of an a>b field
// even when omitempty leaves b out, and Peppol forbids empty elements.
type document struct {
	XMLName  xml.Name
	Xmlns    string `xml:"xmlns,attr"`
	XmlnsCAC string `xml:"xmlns:cac,attr"`
	XmlnsCBC string `xml:"xmlns:cbc,attr"`

	CustomizationID      string            `xml:"cbc:CustomizationID"`
	ProfileID            string            `xml:"cbc:ProfileID"`
	ID                   string            `xml:"cbc:ID"`
	IssueDate            string            `xml:"cbc:IssueDate"`
	DueDate              string            `xml:"cbc:DueDate,omitempty"`
	InvoiceTypeCode      string            `xml:"cbc:InvoiceTypeCode,omitempty"`
	CreditNoteTypeCode   string            `xml:"cbc:CreditNoteTypeCode,omitempty"`
	Note                 string            `xml:"cbc:Note,omitempty"`
	DocumentCurrencyCode string            `xml:"cbc:DocumentCurrencyCode"`
	BuyerReference       string            `xml:"cbc:BuyerReference,omitempty"`
	InvoicePeriod        *period           `xml:"cac:InvoicePeriod"`
	OrderReference       *documentRef      `xml:"cac:OrderReference"`
	BillingReference     *billingReference `xml:"cac:BillingReference"`
	Supplier             party             `xml:"cac:AccountingSupplierParty>cac:Party"`
	Customer             party             `xml:"cac:AccountingCustomerParty>cac:Party"`
	TaxRepresentative    *party            `xml:"cac:TaxRepresentativeParty"`
	PaymentMeans         *paymentMeans     `xml:"cac:PaymentMeans"`
	PaymentTerms         *paymentTerms     `xml:"cac:PaymentTerms"`
	AllowanceCharges     []allowanceCharge `xml:"cac:AllowanceCharge"`
	TaxTotals            []taxTotal        `xml:"cac:TaxTotal"`
	Totals               monetaryTotal     `xml:"cac:LegalMonetaryTotal"`
	InvoiceLines         []line            `xml:"cac:InvoiceLine"`
	CreditNoteLines      []line            `xml:"cac:CreditNoteLine"`
}

type amount struct {
	Currency string `xml:"currencyID,attr"`
	Value    string `xml:",chardata"`
}

type quantity struct {
	UnitCode string `xml:"unitCode,attr,omitempty"`
	Value    string `xml:",chardata"`
}

type identifier struct {
	SchemeID string `xml:"schemeID,attr,omitempty"`
	Value    string `xml:",chardata"`
}

type period struct {
	StartDate string `xml:"cbc:StartDate,omitempty"`
	EndDate   string `xml:"cbc:EndDate,omitempty"`
}

// documentRef is an aggregate holding just an identifier.
type documentRef struct {
	ID string `xml:"cbc:ID"`
}

type billingReference struct {
	Invoice documentRef `xml:"cac:InvoiceDocumentReference"`
}

type party struct {
	EndpointID  *identifier      `xml:"cbc:EndpointID"`
	Name        string           `xml:"cac:PartyName>cbc:Name,omitempty"`
	Address     *address         `xml:"cac:PostalAddress"`
	TaxSchemes  []partyTaxScheme `xml:"cac:PartyTaxScheme"`
	LegalEntity *legalEntity     `xml:"cac:PartyLegalEntity"`
	Contact     *contact         `xml:"cac:Contact"`
}

type contact struct {
	Email string `xml:"cbc:ElectronicMail"`
}

type address struct {
	Street     string `xml:"cbc:StreetName,omitempty"`
	City       string `xml:"cbc:CityName,omitempty"`
	PostalZone string `xml:"cbc:PostalZone,omitempty"`
	Country    string `xml:"cac:Country>cbc:IdentificationCode"`
}

type partyTaxScheme struct {
	CompanyID string `xml:"cbc:CompanyID"`
	TaxScheme string `xml:"cac:TaxScheme>cbc:ID"`
}

type legalEntity struct {
	RegistrationName string `xml:"cbc:RegistrationName"`
	CompanyID        string `xml:"cbc:CompanyID,omitempty"`
}

type paymentMeans struct {
	Code      string           `xml:"cbc:PaymentMeansCode"`
	PaymentID string           `xml:"cbc:PaymentID,omitempty"`
	Account   financialAccount `xml:"cac:PayeeFinancialAccount"`
}

type financialAccount struct {
	ID     string       `xml:"cbc:ID"`
	Branch *documentRef `xml:"cac:FinancialInstitutionBranch"`
}

type paymentTerms struct {
	Note string `xml:"cbc:Note"`
}

type allowanceCharge struct {
	ChargeIndicator bool         `xml:"cbc:ChargeIndicator"`
	ReasonCode      string       `xml:"cbc:AllowanceChargeReasonCode,omitempty"`
	Reason          string       `xml:"cbc:AllowanceChargeReason,omitempty"`
	Multiplier      string       `xml:"cbc:MultiplierFactorNumeric,omitempty"`
	Amount          amount       `xml:"cbc:Amount"`
	BaseAmount      *amount      `xml:"cbc:BaseAmount"`
	TaxCategory     *taxCategory `xml:"cac:TaxCategory"`
}

// taxCategory is a cac:TaxCategory or an item's cac:ClassifiedTaxCategory.
type taxCategory struct {
	ID                  string `xml:"cbc:ID"`
	Percent             string `xml:"cbc:Percent,omitempty"`
	ExemptionReasonCode string `xml:"cbc:TaxExemptionReasonCode,omitempty"`
	ExemptionReason     string `xml:"cbc:TaxExemptionReason,omitempty"`
	TaxScheme           string `xml:"cac:TaxScheme>cbc:ID"`
}

type taxTotal struct {
	TaxAmount amount        `xml:"cbc:TaxAmount"`
	Subtotals []taxSubtotal `xml:"cac:TaxSubtotal"`
}

type taxSubtotal struct {
	TaxableAmount amount      `xml:"cbc:TaxableAmount"`
	TaxAmount     amount      `xml:"cbc:TaxAmount"`
	Category      taxCategory `xml:"cac:TaxCategory"`
}

type monetaryTotal struct {
	LineExtension  amount  `xml:"cbc:LineExtensionAmount"`
	TaxExclusive   amount  `xml:"cbc:TaxExclusiveAmount"`
	TaxInclusive   amount  `xml:"cbc:TaxInclusiveAmount"`
	AllowanceTotal *amount `xml:"cbc:AllowanceTotalAmount"`
	ChargeTotal    *amount `xml:"cbc:ChargeTotalAmount"`
	Prepaid        *amount `xml:"cbc:PrepaidAmount"`
	Rounding       *amount `xml:"cbc:PayableRoundingAmount"`
	Payable        amount  `xml:"cbc:PayableAmount"`
}

// line is a cac:InvoiceLine or a cac:CreditNoteLine: they differ in the
// name of their quantity.
type line struct {
	ID               string            `xml:"cbc:ID"`
	InvoicedQuantity *quantity         `xml:"cbc:InvoicedQuantity"`
	CreditedQuantity *quantity         `xml:"cbc:CreditedQuantity"`
	LineExtension    amount            `xml:"cbc:LineExtensionAmount"`
	AllowanceCharges []allowanceCharge `xml:"cac:AllowanceCharge"`
	Item             item              `xml:"cac:Item"`
	Price            price             `xml:"cac:Price"`
}

type item struct {
	Name          string       `xml:"cbc:Name"`
	SellersItemID *documentRef `xml:"cac:SellersItemIdentification"`
	TaxCategory   taxCategory  `xml:"cac:ClassifiedTaxCategory"`
}

type price struct {
	Amount       amount    `xml:"cbc:PriceAmount"`
	BaseQuantity *quantity `xml:"cbc:BaseQuantity"`
}

// rootNamespace is the namespace of each root element.
var rootNamespace = map[string]string{"Invoice": nsInvoice, "CreditNote": nsCreditNote}

// encode writes d as an indented XML document with its declaration. The
// namespaces follow from the root element's name, so that a decoded document
// encodes back to the bytes it came from.
func encode(d document) ([]byte, error) {
	d.XMLName = xml.Name{Local: d.XMLName.Local}
	d.Xmlns, d.XmlnsCAC, d.XmlnsCBC = rootNamespace[d.XMLName.Local], nsCAC, nsCBC
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	enc.Indent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// decode reads a UBL document into d, whatever prefixes it binds the cac
// and cbc namespaces to.
func decode(b []byte, d *document) error {
	return xml.NewTokenDecoder(prefixer{xml.NewDecoder(bytes.NewReader(b))}).Decode(d)
}

// prefixer renames elements of the cac and cbc namespaces to the prefixed
// names the struct tags use ("cbc:ID"): encoding/xml matches a tag without a
// namespace against an element's local name only.
type prefixer struct{ d *xml.Decoder }

// Token returns the next token, renamed.
func (p prefixer) Token() (xml.Token, error) {
	t, err := p.d.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, err
		}
		return nil, fmt.Errorf("not well-formed XML: %w", err)
	}
	switch e := t.(type) {
	case xml.StartElement:
		e = e.Copy()
		e.Name = prefixed(e.Name)
		return e, nil
	case xml.EndElement:
		e.Name = prefixed(e.Name)
		return e, nil
	}
	return xml.CopyToken(t), nil
}

func prefixed(n xml.Name) xml.Name {
	switch n.Space {
	case nsCAC:
		return xml.Name{Local: "cac:" + n.Local}
	case nsCBC:
		return xml.Name{Local: "cbc:" + n.Local}
	}
	return n
}
