package usage

// The two decoders behind DecodeBatch, for the test that holds them equal.
var (
	DecodeFast    = decodeFast
	DecodeGeneral = decodeGeneral
)
