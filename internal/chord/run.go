package chord

import (
	"context"
	"time"
)

// Run drives the maintenance steps on tickers until ctx ends. Each step's
// remote calls are bounded by CallTimeout, so one slow peer delays a step,
// never the loop.
func (n *Node) Run(ctx context.Context) {
	stab := time.NewTicker(n.cfg.StabilizeInterval)
	fix := time.NewTicker(n.cfg.FixFingersInterval)
	check := time.NewTicker(n.cfg.CheckPredecessorInterval)
	ringCheck := time.NewTicker(n.cfg.CheckRingInterval)
	defer stab.Stop()
	defer fix.Stop()
	defer check.Stop()
	defer ringCheck.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case <-stab.C:
			err = n.Stabilize(ctx)
		case <-fix.C:
			err = n.FixFinger(ctx)
		case <-check.C:
			err = n.CheckPredecessor(ctx)
		case <-ringCheck.C:
			err = n.CheckRing(ctx)
		}
		if err != nil && ctx.Err() == nil {
			n.log.Debug("maintenance step failed", "err", err)
		}
	}
}
