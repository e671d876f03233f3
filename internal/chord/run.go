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
	pace := fixPace{base: n.cfg.FixFingersInterval, max: n.cfg.FixFingersMaxInterval, cur: n.cfg.FixFingersInterval}
	fix := time.NewTimer(pace.cur)
	lastSucc := n.Successor().Addr
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
			var changed, passEnded bool
			changed, passEnded, err = n.fixFinger(ctx)
			if succ := n.Successor().Addr; succ != lastSucc {
				changed, lastSucc = true, succ
			}
			fix.Reset(pace.next(changed, passEnded))
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

// fixPace spaces fix-fingers steps: FixFingersInterval while fingers or the
// successor change, twice as long after each pass over the table that
// changed nothing, up to FixFingersMaxInterval. A ring at rest then pays a
// fraction of the lookups; any change (a failed lookup counts as one) brings
// the pace back at once.
type fixPace struct {
	base, max, cur time.Duration
	passChanged    bool // something changed during the current pass
}

// next records one step and returns the pause before the next.
func (p *fixPace) next(changed, passEnded bool) time.Duration {
	if changed {
		p.cur, p.passChanged = p.base, true
	}
	if passEnded {
		if !p.passChanged {
			p.cur = min(2*p.cur, max(p.max, p.base))
		}
		p.passChanged = false
	}
	return p.cur
}
