using Notice.Vlm.Hooks;

namespace Notice.Tests;

/// <summary>The hook-name scheme of design.md §2, spelled out once: everything else asks HookName.</summary>
public sealed class HookNameTests
{
    [Fact]
    public void NamesFollowTheScheme()
    {
        Assert.Equal("text.blocks.3.resid_pre", HookName.ResidPre(3));
        Assert.Equal("text.blocks.3.resid_post", HookName.ResidPost(3));
        Assert.Equal("text.blocks.0.attn.z", HookName.AttnZ(0));
        Assert.Equal("text.blocks.0.attn.pattern", HookName.AttnPattern(0));
        Assert.Equal("text.blocks.11.attn.out", HookName.AttnOut(11));
        Assert.Equal("text.blocks.2.cross.z", HookName.CrossZ(2));
        Assert.Equal("text.blocks.2.cross.pattern", HookName.CrossPattern(2));
        Assert.Equal("text.blocks.2.cross.out", HookName.CrossOut(2));
        Assert.Equal("text.blocks.5.mlp.out", HookName.MlpOut(5));
        Assert.Equal("vision.blocks.1.resid_post", HookName.ResidPost(1, HookName.Vision));
        Assert.Equal("vision.blocks.1.attn.pattern", HookName.AttnPattern(1, HookName.Vision));
        Assert.Equal("decoder.blocks.0.cross.pattern", HookName.CrossPattern(0, HookName.Decoder));
        Assert.Equal("text.embed", HookName.Embed());
        Assert.Equal("vision.embed", HookName.Embed(HookName.Vision));
        Assert.Equal("decoder.embed", HookName.Embed(HookName.Decoder));
        Assert.Equal("text.final_norm", HookName.FinalNorm());
        Assert.Equal(["projector.in", "projector.hidden", "projector.out"], new[] { HookName.ProjectorIn, HookName.ProjectorHidden, HookName.ProjectorOut });
        Assert.Equal("text.blocks.{l}.attn.z", HookName.Template(BlockHook.AttnZ));
        Assert.Equal("text.blocks.7.attn.z", HookName.ForLayer(HookName.Template(BlockHook.AttnZ), 7));
        Assert.Equal(["text.blocks.0.mlp.out", "text.blocks.1.mlp.out"], HookName.EveryLayer(BlockHook.MlpOut, 2));
        foreach (var point in Enum.GetValues<BlockHook>())
            Assert.Equal(HookName.Block(4, point), HookName.ForLayer(HookName.Template(point), 4));
    }

    [Fact]
    public void NamesParseAndClassify()
    {
        Assert.True(HookName.TryParse("text.blocks.12.cross.z", out var p));
        Assert.Equal(new HookNameParts("text", 12, "cross.z"), p);
        Assert.Equal(BlockHook.CrossZ, p.Block);
        Assert.True(HookName.TryParse("text.final_norm", out p));
        Assert.Equal(new HookNameParts("text", -1, "final_norm"), p);
        Assert.Null(p.Block);
        Assert.True(HookName.TryParse("projector.out", out p));
        Assert.Equal(HookName.Projector, p.Stack);
        Assert.True(HookName.TryParse(HookName.Template(BlockHook.MlpOut), out p));
        Assert.Equal(BlockHook.MlpOut, p.Block);
        Assert.False(HookName.TryParse("text.blocks.x.attn.z", out _));
        Assert.False(HookName.TryParse("text", out _));

        Assert.True(HookName.IsResidPre("text.blocks.3.resid_pre"));
        Assert.False(HookName.IsResidPre("decoder.blocks.3.resid_pre"));
        Assert.True(HookName.IsResidPre("decoder.blocks.3.resid_pre", stack: null));
        Assert.False(HookName.IsResidPre("text.blocks.3.resid_post"));
        Assert.False(HookName.IsResidPre("text.embed"));
        Assert.True(HookName.Is("vision.blocks.0.attn.pattern", BlockHook.AttnPattern, HookName.Vision));
        Assert.False(HookName.Is("text.blocks.0.attn.pattern", BlockHook.AttnPattern, HookName.Vision));
        Assert.True(HookName.IsPattern("text.blocks.1.cross.pattern"));
        Assert.False(HookName.IsPattern("text.blocks.1.cross.z"));
        Assert.True(HookName.IsBlock("text.blocks.10.mlp.out"));
        Assert.False(HookName.IsBlock("text.final_norm"));
        Assert.False(HookName.IsBlock("textual.blocks.1.mlp.out"));
        Assert.True(HookName.IsPerHead("text.blocks.1.attn.z"));
        Assert.True(HookName.IsPerHead(HookName.Template(BlockHook.CrossZ)));
        Assert.False(HookName.IsPerHead("text.blocks.1.attn.out"));
    }
}
