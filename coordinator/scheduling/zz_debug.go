package scheduling

import (
	"os"
	"strconv"
)

var debugSpecial = os.Getenv("ZZDEBUG") != ""

func init() {
	if v, err := strconv.ParseFloat(os.Getenv("ZZTH"), 64); err == nil {
		specializeThreshold = v
	}
}

func init() {
	if os.Getenv("ZZBLEND") != "" {
		strategyBlend = os.Getenv("ZZBLEND") == "1"
	}
	if os.Getenv("ZZOWN") != "" {
		strategyOwnNodes = os.Getenv("ZZOWN") == "1"
	}
}
