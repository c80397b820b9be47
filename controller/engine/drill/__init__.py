"""DR drills: real faults under real load, on relctl's lab or any staging inventory.

    scenarios   one class per scenario (inject, detect, recover, undo), by name
    faults      journaled faults and the channels that inject and undo them
    probe       the 50 ms probe through the LB, and the drill's moments
    runner      safety checks, the drill itself, its reports, ``drill restore``
"""

from controller.engine.drill.faults import DrillSite, Fault
from controller.engine.drill.runner import Drill, DrillPlan, plan_drill, restore_drill, site_for
from controller.engine.drill.scenarios import SCENARIOS, Scenario, scenario

__all__ = ["SCENARIOS", "Drill", "DrillPlan", "DrillSite", "Fault", "Scenario", "plan_drill",
           "restore_drill", "scenario", "site_for"]
