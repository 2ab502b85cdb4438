package portal

import (
	"net/http"

	"golang.org/x/text/language"

	"github.com/paasmeter/paasmeter/locale"
)

// langCookie keeps the language a person chose with ?lang=.
const langCookie = "paasmeter_lang"

// matcher picks among the portal's languages from Accept-Language; the
// first, English, is the fallback.
var matcher = language.NewMatcher([]language.Tag{language.English, language.French, language.Dutch})

// langOf is the language of r's page: ?lang= (which the response keeps in
// a cookie), else the cookie, else the browser's Accept-Language.
func langOf(w http.ResponseWriter, r *http.Request) locale.Lang {
	if q := r.URL.Query().Get("lang"); q != "" {
		if l, err := locale.Parse(q); err == nil {
			http.SetCookie(w, &http.Cookie{Name: langCookie, Value: string(l), Path: "/portal/", MaxAge: 365 * 24 * 3600,
				HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteLaxMode})
			return l
		}
	}
	if c, err := r.Cookie(langCookie); err == nil {
		if l, err := locale.Parse(c.Value); err == nil {
			return l
		}
	}
	tags, _, _ := language.ParseAcceptLanguage(r.Header.Get("Accept-Language"))
	_, i, _ := matcher.Match(tags...)
	return locale.Langs()[i]
}

// messages are the portal's words, by key and language.
var messages = map[string]map[locale.Lang]string{
	"skip":            {locale.English: "Skip to content", locale.French: "Aller au contenu", locale.Dutch: "Naar de inhoud"},
	"portal":          {locale.English: "paasmeter portal", locale.French: "Portail paasmeter", locale.Dutch: "paasmeter-portaal"},
	"language":        {locale.English: "Language", locale.French: "Langue", locale.Dutch: "Taal"},
	"sign in":         {locale.English: "Sign in", locale.French: "Se connecter", locale.Dutch: "Aanmelden"},
	"sign out":        {locale.English: "Sign out", locale.French: "Se déconnecter", locale.Dutch: "Afmelden"},
	"token":           {locale.English: "Your institution's API token", locale.French: "Le jeton d'API de votre institution", locale.Dutch: "Het API-token van uw instelling"},
	"token help":      {locale.English: "The token your platform operator gave your institution. It is not stored in your browser.", locale.French: "Le jeton que l'opérateur de la plateforme a remis à votre institution. Il n'est pas conservé dans votre navigateur.", locale.Dutch: "Het token dat de platformbeheerder aan uw instelling gaf. Het wordt niet in uw browser bewaard."},
	"bad token":       {locale.English: "This token is not an institution's token. Check it and try again.", locale.French: "Ce jeton n'est pas celui d'une institution. Vérifiez-le et réessayez.", locale.Dutch: "Dit token is geen token van een instelling. Controleer het en probeer opnieuw."},
	"expired form":    {locale.English: "The form expired. Please try again.", locale.French: "Le formulaire a expiré. Veuillez réessayer.", locale.Dutch: "Het formulier is verlopen. Probeer opnieuw."},
	"this month":      {locale.English: "This month so far", locale.French: "Ce mois-ci jusqu'à présent", locale.Dutch: "Deze maand tot nu toe"},
	"invoices":        {locale.English: "Invoices", locale.French: "Factures", locale.Dutch: "Facturen"},
	"provisional":     {locale.English: "Provisional: records may still arrive until the month's invoice is issued.", locale.French: "Provisoire\u00a0: des relevés peuvent encore arriver jusqu'à l'émission de la facture du mois.", locale.Dutch: "Voorlopig: er kunnen nog metingen binnenkomen tot de factuur van de maand is uitgereikt."},
	"cost to date":    {locale.English: "Cost to date, VAT included", locale.French: "Coût à ce jour, TVA comprise", locale.Dutch: "Kosten tot nu toe, btw inbegrepen"},
	"up to":           {locale.English: "Records received up to", locale.French: "Relevés reçus jusqu'au", locale.Dutch: "Metingen ontvangen tot"},
	"projection":      {locale.English: "Projected for the whole month", locale.French: "Projection pour le mois entier", locale.Dutch: "Verwacht voor de hele maand"},
	"previous":        {locale.English: "Last month", locale.French: "Le mois précédent", locale.Dutch: "Vorige maand"},
	"by scope":        {locale.English: "By project and environment", locale.French: "Par projet et environnement", locale.Dutch: "Per project en omgeving"},
	"project":         {locale.English: "Project", locale.French: "Projet", locale.Dutch: "Project"},
	"environment":     {locale.English: "Environment", locale.French: "Environnement", locale.Dutch: "Omgeving"},
	"lines":           {locale.English: "Usage", locale.French: "Consommation", locale.Dutch: "Verbruik"},
	"credit":          {locale.English: "SLA credit", locale.French: "Crédit SLA", locale.Dutch: "SLA-krediet"},
	"vat":             {locale.English: "VAT", locale.French: "TVA", locale.Dutch: "Btw"},
	"payable":         {locale.English: "Payable", locale.French: "À payer", locale.Dutch: "Te betalen"},
	"total":           {locale.English: "Total", locale.French: "Total", locale.Dutch: "Totaal"},
	"method":          {locale.English: "How the amounts are shared out", locale.French: "Comment les montants sont répartis", locale.Dutch: "Hoe de bedragen worden verdeeld"},
	"no usage":        {locale.English: "No usage this month yet.", locale.French: "Aucune consommation ce mois-ci pour l'instant.", locale.Dutch: "Nog geen verbruik deze maand."},
	"invoice":         {locale.English: "invoice", locale.French: "facture", locale.Dutch: "factuur"},
	"credit_note":     {locale.English: "credit note", locale.French: "note de crédit", locale.Dutch: "creditnota"},
	"number":          {locale.English: "Number", locale.French: "Numéro", locale.Dutch: "Nummer"},
	"kind":            {locale.English: "Kind", locale.French: "Type", locale.Dutch: "Soort"},
	"period":          {locale.English: "Period", locale.French: "Période", locale.Dutch: "Periode"},
	"issued":          {locale.English: "Issued", locale.French: "Émise le", locale.Dutch: "Uitgereikt op"},
	"due":             {locale.English: "Due", locale.French: "Échéance", locale.Dutch: "Vervaldatum"},
	"download":        {locale.English: "Download", locale.French: "Télécharger", locale.Dutch: "Downloaden"},
	"corrects":        {locale.English: "corrects", locale.French: "corrige", locale.Dutch: "corrigeert"},
	"no invoices":     {locale.English: "No invoice has been issued yet.", locale.French: "Aucune facture n'a encore été émise.", locale.Dutch: "Er is nog geen factuur uitgereikt."},
	"not found":       {locale.English: "This page does not exist, or it is not yours to see.", locale.French: "Cette page n'existe pas, ou vous n'y avez pas accès.", locale.Dutch: "Deze pagina bestaat niet, of u hebt er geen toegang toe."},
	"unavailable":     {locale.English: "The figures cannot be computed right now. Please try again in a few minutes.", locale.French: "Les chiffres ne peuvent pas être calculés pour l'instant. Veuillez réessayer dans quelques minutes.", locale.Dutch: "De cijfers kunnen nu niet worden berekend. Probeer het over enkele minuten opnieuw."},
	"signed in as":    {locale.English: "Signed in for", locale.French: "Connecté pour", locale.Dutch: "Aangemeld voor"},
	"no billing":      {locale.English: "This platform does not bill yet: no rate card is configured.", locale.French: "Cette plateforme ne facture pas encore\u00a0: aucune grille tarifaire n'est configurée.", locale.Dutch: "Dit platform factureert nog niet: er is geen tarievenkaart ingesteld."},
	"closed":          {locale.English: "This month is invoiced: the figures recompute it from every record received by now.", locale.French: "Ce mois est facturé\u00a0: les chiffres le recalculent avec tous les relevés reçus à ce jour.", locale.Dutch: "Deze maand is gefactureerd: de cijfers herberekenen ze met alle metingen die tot nu toe ontvangen zijn."},
	"availability":    {locale.English: "Availability", locale.French: "Disponibilité", locale.Dutch: "Beschikbaarheid"},
	"sla title":       {locale.English: "Availability of the production apps", locale.French: "Disponibilité des applications de production", locale.Dutch: "Beschikbaarheid van de productie-apps"},
	"sla promise":     {locale.English: "The platform promises 99.9 % a month; below it, the month's production lines earn a credit.", locale.French: "La plateforme promet 99,9\u00a0% par mois\u00a0; en dessous, les lignes de production du mois donnent droit à un crédit.", locale.Dutch: "Het platform belooft 99,9 % per maand; daaronder geven de productieregels van de maand recht op een tegoed."},
	"credit earned":   {locale.English: "Credit on the month's production lines", locale.French: "Crédit sur les lignes de production du mois", locale.Dutch: "Tegoed op de productieregels van de maand"},
	"app":             {locale.English: "App", locale.French: "Application", locale.Dutch: "App"},
	"eligible":        {locale.English: "Eligible minutes", locale.French: "Minutes éligibles", locale.Dutch: "Telbare minuten"},
	"up":              {locale.English: "Up", locale.French: "Disponibles", locale.Dutch: "Beschikbaar"},
	"down platform":   {locale.English: "Down, platform", locale.French: "Arrêt, plateforme", locale.Dutch: "Uitval, platform"},
	"down tenant":     {locale.English: "Down, your app", locale.French: "Arrêt, votre application", locale.Dutch: "Uitval, uw app"},
	"maintenance":     {locale.English: "Maintenance", locale.French: "Maintenance", locale.Dutch: "Onderhoud"},
	"windows":         {locale.English: "Maintenance windows", locale.French: "Fenêtres de maintenance", locale.Dutch: "Onderhoudsvensters"},
	"no windows":      {locale.English: "No maintenance window this month.", locale.French: "Aucune fenêtre de maintenance ce mois-ci.", locale.Dutch: "Geen onderhoudsvenster deze maand."},
	"no apps":         {locale.English: "No production app ran this month.", locale.French: "Aucune application de production n'a tourné ce mois-ci.", locale.Dutch: "Er draaide deze maand geen productie-app."},
	"from":            {locale.English: "From", locale.French: "Du", locale.Dutch: "Van"},
	"to":              {locale.English: "To", locale.French: "Au", locale.Dutch: "Tot"},
	"applies to":      {locale.English: "Applies to", locale.French: "Concerne", locale.Dutch: "Geldt voor"},
	"whole platform":  {locale.English: "the whole platform", locale.French: "toute la plateforme", locale.Dutch: "het hele platform"},
	"reason":          {locale.English: "Reason", locale.French: "Motif", locale.Dutch: "Reden"},
	"months":          {locale.English: "Other months", locale.French: "Autres mois", locale.Dutch: "Andere maanden"},
	"counted up to":   {locale.English: "Counted up to", locale.French: "Compté jusqu'au", locale.Dutch: "Geteld tot"},
	"no sla":          {locale.English: "This collector computes no availability.", locale.French: "Ce collecteur ne calcule pas la disponibilité.", locale.Dutch: "Deze collector berekent geen beschikbaarheid."},
	"usage per day":   {locale.English: "Usage per day", locale.French: "Consommation par jour", locale.Dutch: "Verbruik per dag"},
	"chart cpu":       {locale.English: "CPU used", locale.French: "CPU utilisé", locale.Dutch: "Gebruikte CPU"},
	"chart memory":    {locale.English: "Memory used", locale.French: "Mémoire utilisée", locale.Dutch: "Gebruikt geheugen"},
	"chart storage":   {locale.English: "Storage", locale.French: "Stockage", locale.Dutch: "Opslag"},
	"chart network":   {locale.English: "Network, out and in", locale.French: "Réseau, sortant et entrant", locale.Dutch: "Netwerk, uitgaand en inkomend"},
	"day":             {locale.English: "Day", locale.French: "Jour", locale.Dutch: "Dag"},
	"figures":         {locale.English: "The figures", locale.French: "Les chiffres", locale.Dutch: "De cijfers"},
	"outages":         {locale.English: "Down minutes", locale.French: "Minutes d'arrêt", locale.Dutch: "Uitvalminuten"},
	"no outages":      {locale.English: "No down minute this month.", locale.French: "Aucune minute d'arrêt ce mois-ci.", locale.Dutch: "Geen uitvalminuut deze maand."},
	"cause":           {locale.English: "Cause", locale.French: "Cause", locale.Dutch: "Oorzaak"},
	"minutes":         {locale.English: "Minutes", locale.French: "Minutes", locale.Dutch: "Minuten"},
	"cause platform":  {locale.English: "the platform (counts against the promise)", locale.French: "la plateforme (compte dans l'engagement)", locale.Dutch: "het platform (telt voor de belofte)"},
	"cause tenant":    {locale.English: "your app", locale.French: "votre application", locale.Dutch: "uw app"},
	"signed in":       {locale.English: "Signed in", locale.French: "Connecté", locale.Dutch: "Aangemeld"},
	"continue":        {locale.English: "Continue to your institution's pages", locale.French: "Continuer vers les pages de votre institution", locale.Dutch: "Verder naar de pagina's van uw instelling"},
	"sign in with":    {locale.English: "Sign in with", locale.French: "Se connecter avec", locale.Dutch: "Aanmelden met"},
	"or token":        {locale.English: "Or with your institution's API token", locale.French: "Ou avec le jeton d'API de votre institution", locale.Dutch: "Of met het API-token van uw instelling"},
	"idp unavailable": {locale.English: "The identity provider cannot be reached right now. Please try again later.", locale.French: "Le fournisseur d'identité est injoignable pour l'instant. Veuillez réessayer plus tard.", locale.Dutch: "De identiteitsprovider is nu niet bereikbaar. Probeer het later opnieuw."},
	"idp refused":     {locale.English: "The sign-in did not succeed, or your account is not linked to an institution of this platform.", locale.French: "La connexion a échoué, ou votre compte n'est lié à aucune institution de cette plateforme.", locale.Dutch: "De aanmelding is mislukt, of uw account is aan geen instelling van dit platform gekoppeld."},
	"previous draft":  {locale.English: "not invoiced yet", locale.French: "pas encore facturé", locale.Dutch: "nog niet gefactureerd"},
}

// t is key's message in l.
func t(l locale.Lang, key string) string {
	if s, ok := messages[key][l]; ok {
		return s
	}
	return messages[key][locale.English]
}
