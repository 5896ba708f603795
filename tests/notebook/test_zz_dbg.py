from tests.notebook.test_kernel_runs import *  # noqa
def test_dbg(kernel, fake_model):
    fake_model.script([Turn(reasoning="Let me run something.", tool_calls=[Call("python", code("1+1"))]), Turn(content="Fine")])
    i = ask(kernel, fake_model, "do something")
    kernel.wait_pending(i, "functions.python:0")
    kernel.click(i, {"action": "stop"})
    kernel.wait_ended(i)
    for e in kernel.events(i):
        if e["type"] not in ("reasoning.delta",): print({k: (str(v)[:150]) for k, v in e.items() if k not in ("ts",)})
