package pdf

import "github.com/paasmeter/paasmeter/locale"

// messages are the document's words in French and Dutch, keyed by the
// English the code writes (a format's verbs kept in order, or indexed). A
// message missing here prints in English; the tests render every kind of
// document in every language and fail on one.
var messages = map[string]map[locale.Lang]string{
	"Invoice":     {locale.French: "Facture", locale.Dutch: "Factuur"},
	"Credit note": {locale.French: "Note de crédit", locale.Dutch: "Creditnota"},
	"Draft invoice %s %s": {
		locale.French: "Projet de facture %s %s", locale.Dutch: "Conceptfactuur %s %s"},
	"Draft credit note %s %s": {
		locale.French: "Projet de note de crédit %s %s", locale.Dutch: "Conceptcreditnota %s %s"},
	"%s for %s, %s":     {locale.French: "%s pour %s, %s", locale.Dutch: "%s voor %s, %s"},
	"%s (continued)":    {locale.French: "%s (suite)", locale.Dutch: "%s (vervolg)"},
	"your reference %s": {locale.French: "votre référence %s", locale.Dutch: "uw referentie %s"},
	"page %d of %d":     {locale.French: "page %d sur %d", locale.Dutch: "pagina %d van %d"},

	"DRAFT · not for payment": {
		locale.French: "PROJET · pas une demande de paiement", locale.Dutch: "CONCEPT · geen betalingsverzoek"},
	"DRAFT · provisional: records may still arrive": {
		locale.French: "PROJET · provisoire\u00a0: des relevés peuvent encore arriver",
		locale.Dutch:  "CONCEPT · voorlopig: er kunnen nog metingen binnenkomen"},
	"Number":           {locale.French: "Numéro", locale.Dutch: "Nummer"},
	"draft":            {locale.French: "projet", locale.Dutch: "concept"},
	"Issue date":       {locale.French: "Date d'émission", locale.Dutch: "Datum"},
	"Corrects invoice": {locale.French: "Corrige la facture", locale.Dutch: "Corrigeert factuur"},
	"Due date":         {locale.French: "Échéance", locale.Dutch: "Vervaldatum"},
	"Period":           {locale.French: "Période", locale.Dutch: "Periode"},
	"Your reference":   {locale.French: "Votre référence", locale.Dutch: "Uw referentie"},
	"BILLED TO":        {locale.French: "FACTURÉ À", locale.Dutch: "GEFACTUREERD AAN"},
	"VAT %s":           {locale.French: "TVA %s", locale.Dutch: "btw %s"},
	"Enterprise no. %s": {
		locale.French: "N° d'entreprise %s", locale.Dutch: "Ondernemingsnr. %s"},
	"Belgium": {locale.French: "Belgique", locale.Dutch: "België"},

	"This credit note corrects invoice %s (%s).": {
		locale.French: "Cette note de crédit corrige la facture %s (%s).",
		locale.Dutch:  "Deze creditnota corrigeert factuur %s (%s)."},
	"Reason: %s.": {locale.French: "Motif\u00a0: %s.", locale.Dutch: "Reden: %s."},

	"Invoice lines":     {locale.French: "Lignes de la facture", locale.Dutch: "Factuurregels"},
	"Credit note lines": {locale.French: "Lignes de la note de crédit", locale.Dutch: "Creditnotaregels"},
	"Quantities in billing units; prices and amounts in %s, excluding VAT.": {
		locale.French: "Quantités en unités de facturation\u00a0; prix et montants en %s, hors TVA.",
		locale.Dutch:  "Hoeveelheden in factureringseenheden; prijzen en bedragen in %s, exclusief btw."},
	"Description":     {locale.French: "Description", locale.Dutch: "Omschrijving"},
	"Tier":            {locale.French: "Palier", locale.Dutch: "Schijf"},
	"Quantity":        {locale.French: "Quantité", locale.Dutch: "Hoeveelheid"},
	"Unit":            {locale.French: "Unité", locale.Dutch: "Eenheid"},
	"Unit price":      {locale.French: "Prix unitaire", locale.Dutch: "Eenheidsprijs"},
	"Amount":          {locale.French: "Montant", locale.Dutch: "Bedrag"},
	"rate %s from %s": {locale.French: "tarif %s dès le %s", locale.Dutch: "tarief %s vanaf %s"},
	"adjusts %s":      {locale.French: "régularise %s", locale.Dutch: "corrigeert %s"},
	"Subtotal %s":     {locale.French: "Sous-total %s", locale.Dutch: "Subtotaal %s"},
	"No lines.":       {locale.French: "Aucune ligne.", locale.Dutch: "Geen regels."},
	"Correction of invoice %s": {
		locale.French: "Correction de la facture %s", locale.Dutch: "Correctie van factuur %s"},
	"%s · adjustment: records of %s received after its invoice": {
		locale.French: "%s · régularisation\u00a0: relevés de %s reçus après sa facture",
		locale.Dutch:  "%s · correctie: metingen van %s ontvangen na de factuur ervan"},
	"Production": {locale.French: "Production", locale.Dutch: "Productie"},
	"Non-production (dev, test, acc)": {
		locale.French: "Hors production (dev, test, acc)", locale.Dutch: "Niet-productie (dev, test, acc)"},
	"Correction":         {locale.French: "Correction", locale.Dutch: "Correctie"},
	"Memory":             {locale.French: "Mémoire", locale.Dutch: "Geheugen"},
	"Storage":            {locale.French: "Stockage", locale.Dutch: "Opslag"},
	"Network out":        {locale.French: "Réseau sortant", locale.Dutch: "Netwerk uitgaand"},
	"Network in":         {locale.French: "Réseau entrant", locale.Dutch: "Netwerk inkomend"},
	"Container run time": {locale.French: "Exécution des conteneurs", locale.Dutch: "Looptijd containers"},

	"Lines":                  {locale.French: "Lignes", locale.Dutch: "Regels"},
	"SLA credit %s reversed": {locale.French: "Crédit SLA %s annulé", locale.Dutch: "SLA-tegoed %s teruggedraaid"},
	"SLA credit %s (%s %% of %s)": {
		locale.French: "Crédit SLA %s (%s\u00a0%% de %s)", locale.Dutch: "SLA-tegoed %s (%s %% van %s)"},
	"Taxable amount": {locale.French: "Montant imposable", locale.Dutch: "Maatstaf van heffing"},
	"VAT":            {locale.French: "TVA", locale.Dutch: "Btw"},
	"VAT and totals": {locale.French: "TVA et totaux", locale.Dutch: "Btw en totalen"},
	"Category":       {locale.French: "Catégorie", locale.Dutch: "Categorie"},
	"Rate":           {locale.French: "Taux", locale.Dutch: "Tarief"},
	"Taxable":        {locale.French: "Base", locale.Dutch: "Grondslag"},
	"Total payable":  {locale.French: "Total à payer", locale.Dutch: "Te betalen"},
	"Total credited": {locale.French: "Total crédité", locale.Dutch: "Totaal gecrediteerd"},
	"VAT exemption: %s": {
		locale.French: "Exonération de TVA\u00a0: %s", locale.Dutch: "Btw-vrijstelling: %s"},
	"exempt":            {locale.French: "exonéré", locale.Dutch: "vrijgesteld"},
	"S · standard rate": {locale.French: "S · taux normal", locale.Dutch: "S · normaal tarief"},
	"E · exempt":        {locale.French: "E · exonéré", locale.Dutch: "E · vrijgesteld"},

	"Service level: availability of the production apps": {
		locale.French: "Niveau de service\u00a0: disponibilité des applications de production",
		locale.Dutch:  "Serviceniveau: beschikbaarheid van de productie-apps"},
	"No SLA figures on this document.": {
		locale.French: "Aucun chiffre SLA sur ce document.", locale.Dutch: "Geen SLA-cijfers op dit document."},
	"No SLA figures on this credit note: it leaves the SLA credit of invoice %s as it is.": {
		locale.French: "Aucun chiffre SLA sur cette note de crédit\u00a0: elle laisse le crédit SLA de la facture %s inchangé.",
		locale.Dutch:  "Geen SLA-cijfers op deze creditnota: het SLA-tegoed van factuur %s blijft ongewijzigd."},
	"Month":              {locale.French: "Mois", locale.Dutch: "Maand"},
	"Availability":       {locale.French: "Disponibilité", locale.Dutch: "Beschikbaarheid"},
	"Eligible minutes":   {locale.French: "Minutes éligibles", locale.Dutch: "Telbare minuten"},
	"Platform down min.": {locale.French: "Min. d'arrêt plateforme", locale.Dutch: "Uitvalmin. platform"},
	"Credit tier":        {locale.French: "Palier de crédit", locale.Dutch: "Tegoedschijf"},
	"Credit":             {locale.French: "Crédit", locale.Dutch: "Tegoed"},
	"no production app":  {locale.French: "aucune app de production", locale.Dutch: "geen productie-app"},
	"%s %% reversed":     {locale.French: "%s\u00a0%% annulé", locale.Dutch: "%s %% teruggedraaid"},
	"none":               {locale.French: "aucun", locale.Dutch: "geen"},
	"below %s %%: %s %%": {locale.French: "sous %s\u00a0%%\u00a0: %s\u00a0%%", locale.Dutch: "onder %s %%: %s %%"},
	"Maintenance windows: none declared.": {
		locale.French: "Fenêtres de maintenance\u00a0: aucune déclarée.", locale.Dutch: "Onderhoudsvensters: geen aangekondigd."},
	"Credit tiers: %s of the month's production lines.": {
		locale.French: "Paliers de crédit\u00a0: %s des lignes de production du mois.",
		locale.Dutch:  "Tegoedschijven: %s van de productieregels van de maand."},
	"Availability = (eligible minutes - platform-caused down minutes) / eligible minutes; \"—\" where the source does not report minutes. Source: %s.": {
		locale.French: "Disponibilité = (minutes éligibles - minutes d'arrêt dues à la plateforme) / minutes éligibles\u00a0; «\u00a0—\u00a0» où la source ne compte pas les minutes. Source\u00a0: %s.",
		locale.Dutch:  "Beschikbaarheid = (telbare minuten - uitvalminuten door het platform) / telbare minuten; \"—\" waar de bron geen minuten telt. Bron: %s."},

	"Payment": {locale.French: "Paiement", locale.Dutch: "Betaling"},
	"This is a draft: it is not a request for payment. The issued invoice will carry a number and a due date.": {
		locale.French: "Ceci est un projet\u00a0: ce n'est pas une demande de paiement. La facture émise portera un numéro et une échéance.",
		locale.Dutch:  "Dit is een concept: het is geen betalingsverzoek. De uitgereikte factuur krijgt een nummer en een vervaldatum."},
	"This credit note credits %s against invoice %s; no payment is due. Please mention %s when you book it.": {
		locale.French: "Cette note de crédit porte %s au crédit de la facture %s\u00a0; aucun paiement n'est dû. Veuillez mentionner %s en la comptabilisant.",
		locale.Dutch:  "Deze creditnota crediteert %s op factuur %s; er is niets te betalen. Vermeld %s wanneer u ze boekt."},
	"Nothing to pay. Please mention %s in any correspondence.": {
		locale.French: "Rien à payer. Veuillez mentionner %s dans toute correspondance.",
		locale.Dutch:  "Niets te betalen. Vermeld %s in alle correspondentie."},
	"Please transfer %s by %s to IBAN %s": {
		locale.French: "Veuillez virer %s au plus tard le %s sur l'IBAN %s",
		locale.Dutch:  "Gelieve %s uiterlijk op %s over te maken op IBAN %s"},
	", account holder %s, and please mention %s.": {
		locale.French: ", titulaire du compte %s, en mentionnant %s.",
		locale.Dutch:  ", rekeninghouder %s, met vermelding van %s."},
	"Questions: %s.": {locale.French: "Questions\u00a0: %s.", locale.Dutch: "Vragen: %s."},

	"Annex: usage per project and environment": {
		locale.French: "Annexe\u00a0: consommation par projet et environnement",
		locale.Dutch:  "Bijlage: verbruik per project en omgeving"},
	"quantities in billing units": {
		locale.French: "quantités en unités de facturation", locale.Dutch: "hoeveelheden in factureringseenheden"},
	"Environment": {locale.French: "Environnement", locale.Dutch: "Omgeving"},
	"Meter":       {locale.French: "Compteur", locale.Dutch: "Meter"},
	"Project %s":  {locale.French: "Projet %s", locale.Dutch: "Project %s"},
	"adjustment: records of %s": {
		locale.French: "régularisation\u00a0: relevés de %s", locale.Dutch: "correctie: metingen van %s"},
	"of which measured": {locale.French: "dont mesuré", locale.Dutch: "waarvan gemeten"},
	"min-run top-up":    {locale.French: "complément de durée minimale", locale.Dutch: "aanvulling minimale looptijd"},
	"reserved uplift":   {locale.French: "supplément de réservation", locale.Dutch: "reserveringstoeslag"},
}
