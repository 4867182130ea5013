"""Write-Debug, Write-Information and Write-Progress reach the optional Streams calls as PowerShell 5.1 decides."""

from __future__ import annotations


def test_write_debug_is_silent_unless_debug_preference_or_switch_asks(ps) -> None:
    assert ps("Write-Debug 'hidden'").debug_messages == []
    assert ps("$DebugPreference = 'Continue'; Write-Debug 'shown'; Write-Debug 'off' -Debug:$false").debug_messages == ["shown"]
    assert ps("Write-Debug 'switch' -Debug").debug_messages == ["switch"]


def test_write_information_reaches_the_stream_even_when_silently_continued(ps) -> None:
    streams = ps("Write-Information 'note' -Tags a,b; Write-Information -MessageData 42")
    assert streams.information_records == [("note", ["a", "b"]), (42, [])]
    assert ps("$InformationPreference = 'Ignore'; Write-Information 'dropped'").information_records == []


def test_write_progress_carries_activity_status_and_completion(ps) -> None:
    streams = ps("Write-Progress -Activity 'Copying' -Status '3 of 4' -PercentComplete 75 -Id 2; "
                 "Write-Progress -Activity 'Copying' -Completed")
    first, last = streams.progress_records
    assert (first["activity"], first["status"], first["percent_complete"], first["activity_id"]) == ("Copying", "3 of 4", 75, 2)
    assert first["completed"] is False and last["completed"] is True
    assert ps("$ProgressPreference = 'SilentlyContinue'; Write-Progress -Activity x").progress_records == []
