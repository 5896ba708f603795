import asyncio
async def test_status(jp_fetch):
    r = await jp_fetch("api", "status")
    assert r.code == 200
    await asyncio.sleep(0.01)
