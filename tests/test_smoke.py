from temporalio.client import Client

from kbflow.case import CaseStatus, EventOutcome, Phase
from kbflow.scenario import Scenario, example_files
from kbflow.settings import workflow_id
from workflows.case_workflow import CaseWorkflow


async def test_example_runs(client: Client, task_queue: str, worker, store) -> None:
    scenario = Scenario.load(example_files()[0])
    ref = "KB-2026-SMOKE1"
    handle = await client.start_workflow(CaseWorkflow.run, scenario.start(ref),
                                         id=workflow_id(ref), task_queue=task_queue)
    for item in scenario.events:
        outcome = await handle.execute_update(item.event, item.parsed(), id=item.body["idempotency_key"],
                                              result_type=EventOutcome)
        print(outcome)
    status = await handle.query(CaseWorkflow.status)
    assert isinstance(status, CaseStatus)
    assert status.phase is Phase.OTS
    print(status)
    for p in store.packets(ref):
        print(p.step, p.sender, p.recipient, sorted(p.body))
