package scheduling

import (
	"os"
	"strconv"
)

func init() {
	if v, err := strconv.ParseFloat(os.Getenv("ZZWIN"), 64); err == nil {
		balanceWindow = v
	}
}
